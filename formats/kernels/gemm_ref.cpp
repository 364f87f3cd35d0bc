// Scalar twins of the SIMD kernels: same layout, same integer dot products, the same fp32
// operations in the same order (explicit std::fma where the SIMD code fuses), so their results
// are bit-identical to the AVX2 and AVX-512 paths.
#include <cmath>

#include "formats/kernels/kernels.h"
#include "ptq/error.h"

namespace ptq::kernels {

namespace {

float tile_row_dot(const PackedMatrix& m, const ActivationBlocks& a, int tile, int r, int t) {
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  const int8_t* xq = a.token_q(t);
  const float* d = a.token_scale(t);
  const float* gsum = a.token_group_sum(t);
  float y = 0.0f;
  for (int g = 0; g < m.groups; ++g) {
    float gacc = 0.0f;
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      const uint8_t* block = codes + size_t(b) * m.block_size;
      int isum = 0;
      for (int c = 0; c < kBlockCols; ++c) isum += block_code(block, m.bits, r, c) * xq[size_t(b) * kBlockCols + c];
      gacc = std::fma(d[b], float(isum), gacc);
    }
    const float centered = std::fma(-float(params[g].zero[r]), gsum[g], gacc);
    y = std::fma(params[g].scale[r], centered, y);
  }
  return y;
}

}  // namespace

void gemm_ref(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int t = 0; t < a.tokens; ++t)
      for (int r = 0; r < kTileRows && tile * kTileRows + r < m.rows; ++r)
        y[size_t(t) * m.rows + tile * kTileRows + r] = tile_row_dot(m, a, tile, r, t);
}

void gemv_ref(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  PTQ_ASSERT(a.tokens == 1);
  gemm_ref(m, a, tile_begin, tile_end, y);
}

}  // namespace ptq::kernels
