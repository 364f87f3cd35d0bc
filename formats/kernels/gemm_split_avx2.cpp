// AVX2 kernels of the int8x3 arithmetic (kernels.h): per block half (8 rows), the three digit
// dot products via vpmaddubsw (block_dot, decode_avx2.h), combined in fp32 exactly as the
// reference does. |q₀| ≤ 127 and |q₁|, |q₂| ≤ 64 keep block_dot's int16 sums in range.
#include <immintrin.h>

#include "formats/kernels/decode_avx2.h"
#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

template <int Bits>
PTQ_AVX2 void half_tile_token(const PackedMatrix& m, const SplitActivations& a, int tile, int h, int t, float* y) {
  const int first_row = tile * kTileRows + h * kHalfRows;
  if (first_row >= m.rows) return;
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  const float* d = a.token_scale(t);
  const __m256 step = _mm256_set1_ps(1.0f / float(1 << kDigitBits));
  __m256 yacc = _mm256_setzero_ps();
  for (int g = 0; g < m.groups; ++g) {
    __m256 gacc = _mm256_setzero_ps();
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      __m256i quad[kQuadsPerBlock];
      decode_half<Bits>(codes + size_t(b) * sizeof(Block<Bits>), h, quad);
      const size_t p0 = size_t(b) * kBlockCols;
      const __m256 d0 = _mm256_cvtepi32_ps(block_dot<Bits>(quad, a.token_digit(0, t) + p0));
      const __m256 d1 = _mm256_cvtepi32_ps(block_dot<Bits>(quad, a.token_digit(1, t) + p0));
      const __m256 d2 = _mm256_cvtepi32_ps(block_dot<Bits>(quad, a.token_digit(2, t) + p0));
      const __m256 f = _mm256_fmadd_ps(_mm256_fmadd_ps(d2, step, d1), step, d0);
      gacc = _mm256_fmadd_ps(_mm256_set1_ps(d[b]), f, gacc);
    }
    const __m256 scale = _mm256_loadu_ps(params[g].scale + h * kHalfRows);
    const __m256 zero =
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(params[g].zero + h * kHalfRows))));
    const __m256 centered = _mm256_fnmadd_ps(zero, _mm256_set1_ps(a.token_xsum(t)[g]), gacc);
    yacc = _mm256_fmadd_ps(scale, centered, yacc);
  }
  float out[kHalfRows];
  _mm256_storeu_ps(out, yacc);
  for (int r = 0; r < kHalfRows && first_row + r < m.rows; ++r) y[size_t(t) * m.rows + first_row + r] = out[r];
}

template <int Bits>
PTQ_AVX2 void tiles(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int h = 0; h < 2; ++h)
      for (int t = 0; t < a.tokens; ++t) half_tile_token<Bits>(m, a, tile, h, t, y);
}

}  // namespace

void gemm_split_avx2(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles<8>(m, a, tile_begin, tile_end, y);
  }
}

}  // namespace ptq::kernels
