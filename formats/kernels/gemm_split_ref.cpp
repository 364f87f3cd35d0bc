// Scalar reference of the int8x3 arithmetic (kernels.h): per block three integer dot products
// D_k = Σ code·q_k, combined as f = fma(fma(D₂, 2^−7, D₁), 2^−7, D₀), gacc = fma(d_b, f, gacc),
// then the group's zero point as in the fp32 arithmetic. The SIMD paths do the same fp32
// operations in the same order.
#include <cmath>

#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

float tile_row_dot(const PackedMatrix& m, const SplitActivations& a, int tile, int r, int t) {
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  const float* d = a.token_scale(t);
  const float* xsum = a.token_xsum(t);
  const float step = 1.0f / float(1 << kDigitBits);
  float y = 0.0f;
  for (int g = 0; g < m.groups; ++g) {
    float gacc = 0.0f;
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      const uint8_t* block = codes + size_t(b) * m.block_size;
      int dot[kDigits] = {0, 0, 0};
      for (int c = 0; c < kBlockCols; ++c) {
        const int code = block_code(block, m.bits, r, c);
        for (int k = 0; k < kDigits; ++k) dot[k] += code * a.token_digit(k, t)[size_t(b) * kBlockCols + c];
      }
      const float f = std::fma(std::fma(float(dot[2]), step, float(dot[1])), step, float(dot[0]));
      gacc = std::fma(d[b], f, gacc);
    }
    const float centered = std::fma(-float(params[g].zero[r]), xsum[g], gacc);
    y = std::fma(params[g].scale[r], centered, y);
  }
  return y;
}

}  // namespace

void gemm_split_ref(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int t = 0; t < a.tokens; ++t)
      for (int r = 0; r < kTileRows && tile * kTileRows + r < m.rows; ++r)
        y[size_t(t) * m.rows + tile * kTileRows + r] = tile_row_dot(m, a, tile, r, t);
}

}  // namespace ptq::kernels
