// Scalar reference of the fp32 arithmetic (kernels.h): the same four FMA chains per group,
// the same combination order and the same per-group zero-point correction as the SIMD paths,
// with explicit std::fma, so all paths agree bit for bit.
#include <cmath>

#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

float tile_row_dot(const PackedMatrix& m, const FloatActivations& a, int tile, int r, int t) {
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  const float* x = a.token_x(t);
  const float* xsum = a.token_xsum(t);
  float y = 0.0f;
  for (int g = 0; g < m.groups; ++g) {
    float chain[kQuadCols] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      const uint8_t* block = codes + size_t(b) * m.block_size;
      for (int c = 0; c < kBlockCols; ++c)
        chain[c % kQuadCols] =
            std::fma(float(block_code(block, m.bits, r, c)), x[size_t(b) * kBlockCols + c], chain[c % kQuadCols]);
    }
    const float accq = (chain[0] + chain[1]) + (chain[2] + chain[3]);
    const float centered = std::fma(-float(params[g].zero[r]), xsum[g], accq);
    y = std::fma(params[g].scale[r], centered, y);
  }
  return y;
}

}  // namespace

void gemm_f32_ref(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int t = 0; t < a.tokens; ++t)
      for (int r = 0; r < kTileRows && tile * kTileRows + r < m.rows; ++r)
        y[size_t(t) * m.rows + tile * kTileRows + r] = tile_row_dot(m, a, tile, r, t);
}

}  // namespace ptq::kernels
