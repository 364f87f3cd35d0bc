// Scalar references of the three activation arithmetics (kernels.h), the readable twins of the
// SIMD templates in simd_kernels.h: same layout, same exact integer dot products, the same fp32
// operations in the same order (explicit std::fma where the SIMD code fuses), so their results
// are bit-identical to the AVX2 and AVX-512 paths. Codes are decoded one at a time through
// block_code; any bit width and either statistics kind is handled at run time.
#include <cmath>

#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

// y + scale·(acc − zero·xsum) for integer zeros, y + scale·acc + offset·xsum for float offsets.
float group_update(const PackedMatrix& m, int tile, int g, int r, float acc, float xsum, float y) {
  if (m.float_offsets) {
    const OffsetParams& p = m.tile_offset_params(tile)[g];
    return std::fma(p.offset[r], xsum, std::fma(p.scale[r], acc, y));
  }
  const GroupParams& p = m.tile_params(tile)[g];
  return std::fma(p.scale[r], std::fma(-float(p.zero[r]), xsum, acc), y);
}

const uint8_t* block_of(const PackedMatrix& m, int tile, int b) { return m.tile_codes(tile) + size_t(b) * m.block_size; }

// int8: gacc = Σ_b fma(d_b, Σ code·x̂, gacc).
float int8_row(const PackedMatrix& m, const ActivationBlocks& a, int tile, int r, int t) {
  const int8_t* xq = a.token_q(t);
  const float* d = a.token_scale(t);
  float y = 0.0f;
  for (int g = 0; g < m.groups; ++g) {
    float gacc = 0.0f;
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      int isum = 0;
      for (int c = 0; c < kBlockCols; ++c)
        isum += block_code(block_of(m, tile, b), m.bits, r, c) * xq[size_t(b) * kBlockCols + c];
      gacc = std::fma(d[b], float(isum), gacc);
    }
    y = group_update(m, tile, g, r, gacc, a.token_group_sum(t)[g], y);
  }
  return y;
}

// fp32: four chains a_i = fma(code_p, x_p, a_i), i = p mod 4, combined (a_0 + a_1) + (a_2 + a_3).
float fp32_row(const PackedMatrix& m, const FloatActivations& a, int tile, int r, int t) {
  const float* x = a.token_x(t);
  float y = 0.0f;
  for (int g = 0; g < m.groups; ++g) {
    float chain[kQuadCols] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b)
      for (int c = 0; c < kBlockCols; ++c)
        chain[c % kQuadCols] = std::fma(float(block_code(block_of(m, tile, b), m.bits, r, c)),
                                        x[size_t(b) * kBlockCols + c], chain[c % kQuadCols]);
    const float accq = (chain[0] + chain[1]) + (chain[2] + chain[3]);
    y = group_update(m, tile, g, r, accq, a.token_xsum(t)[g], y);
  }
  return y;
}

// int8x3: D_k = Σ code·q_k, f = fma(fma(D₂, 2^−7, D₁), 2^−7, D₀), gacc = fma(d_b, f, gacc).
float int8x3_row(const PackedMatrix& m, const SplitActivations& a, int tile, int r, int t) {
  const float* d = a.token_scale(t);
  const float step = 1.0f / float(1 << kDigitBits);
  float y = 0.0f;
  for (int g = 0; g < m.groups; ++g) {
    float gacc = 0.0f;
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      int dot[kDigits] = {0, 0, 0};
      for (int c = 0; c < kBlockCols; ++c) {
        const int code = block_code(block_of(m, tile, b), m.bits, r, c);
        for (int k = 0; k < kDigits; ++k) dot[k] += code * a.token_digit(k, t)[size_t(b) * kBlockCols + c];
      }
      const float f = std::fma(std::fma(float(dot[2]), step, float(dot[1])), step, float(dot[0]));
      gacc = std::fma(d[b], f, gacc);
    }
    y = group_update(m, tile, g, r, gacc, a.token_xsum(t)[g], y);
  }
  return y;
}

template <class A, float (*Row)(const PackedMatrix&, const A&, int, int, int)>
void ref_tiles(const PackedMatrix& m, const A& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int t = 0; t < a.tokens; ++t)
      for (int r = 0; r < kTileRows && tile * kTileRows + r < m.rows; ++r)
        y[size_t(t) * m.rows + tile * kTileRows + r] = Row(m, a, tile, r, t);
}

}  // namespace

void gemm_ref(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  ref_tiles<ActivationBlocks, int8_row>(m, a, tile_begin, tile_end, y);
}
void gemm_f32_ref(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end, float* y) {
  ref_tiles<FloatActivations, fp32_row>(m, a, tile_begin, tile_end, y);
}
void gemm_split_ref(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end, float* y) {
  ref_tiles<SplitActivations, int8x3_row>(m, a, tile_begin, tile_end, y);
}

TileKernels ref_tile_kernels(int, bool) { return {gemm_ref, gemm_f32_ref, gemm_split_ref}; }

}  // namespace ptq::kernels
