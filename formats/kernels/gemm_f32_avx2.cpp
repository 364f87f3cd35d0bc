// AVX2 + FMA kernels of the fp32 arithmetic (kernels.h): each block half (8 rows) is decoded
// to one byte per code; column c's 8 codes are byte c mod 4 of each 32-bit lane, shifted down,
// masked and converted, then one FMA with the broadcast x feeds 8 rows. Same four chains and
// combination order as the reference.
#include <immintrin.h>

#include <cstring>

#include "formats/kernels/decode_avx2.h"
#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

PTQ_AVX2 inline __m256 column_codes(__m256i quad, int lane_byte) {
  const __m256i shifted = _mm256_srli_epi32(quad, 8 * lane_byte);
  const __m256i code = lane_byte == 3 ? shifted : _mm256_and_si256(shifted, _mm256_set1_epi32(0xFF));
  return _mm256_cvtepi32_ps(code);
}

PTQ_AVX2 inline void store_rows(float* dst, __m256 v, int valid) {
  if (valid >= kHalfRows) {
    _mm256_storeu_ps(dst, v);
  } else if (valid > 0) {
    float tmp[kHalfRows];
    _mm256_storeu_ps(tmp, v);
    std::memcpy(dst, tmp, sizeof(float) * valid);
  }
}

template <int Bits, int TB>
PTQ_AVX2 void half_tile_tokens(const PackedMatrix& m, const FloatActivations& a, int tile, int h, int t0, float* y) {
  const int first_row = tile * kTileRows + h * kHalfRows;
  if (first_row >= m.rows) return;
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  __m256 yacc[TB];
  for (int t = 0; t < TB; ++t) yacc[t] = _mm256_setzero_ps();
  for (int g = 0; g < m.groups; ++g) {
    __m256 chain[TB][kQuadCols];
    for (int t = 0; t < TB; ++t)
      for (int i = 0; i < kQuadCols; ++i) chain[t][i] = _mm256_setzero_ps();
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      __m256i quad[kQuadsPerBlock];
      decode_half<Bits>(codes + size_t(b) * sizeof(Block<Bits>), h, quad);
      const size_t p0 = size_t(b) * kBlockCols;
#pragma GCC unroll 32
      for (int c = 0; c < kBlockCols; ++c) {
        const __m256 w = column_codes(quad[c / kQuadCols], c % kQuadCols);
        for (int t = 0; t < TB; ++t)
          chain[t][c % kQuadCols] =
              _mm256_fmadd_ps(w, _mm256_set1_ps(a.token_x(t0 + t)[p0 + c]), chain[t][c % kQuadCols]);
      }
    }
    const __m256 scale = _mm256_loadu_ps(params[g].scale + h * kHalfRows);
    const __m256 zero =
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(params[g].zero + h * kHalfRows))));
    for (int t = 0; t < TB; ++t) {
      const __m256 accq = _mm256_add_ps(_mm256_add_ps(chain[t][0], chain[t][1]), _mm256_add_ps(chain[t][2], chain[t][3]));
      const __m256 centered = _mm256_fnmadd_ps(zero, _mm256_set1_ps(a.token_xsum(t0 + t)[g]), accq);
      yacc[t] = _mm256_fmadd_ps(scale, centered, yacc[t]);
    }
  }
  for (int t = 0; t < TB; ++t) store_rows(y + size_t(t0 + t) * m.rows + first_row, yacc[t], m.rows - first_row);
}

template <int Bits>
PTQ_AVX2 void tiles(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int h = 0; h < 2; ++h) {
      int t0 = 0;
      for (; t0 + 2 <= a.tokens; t0 += 2) half_tile_tokens<Bits, 2>(m, a, tile, h, t0, y);
      if (t0 < a.tokens) half_tile_tokens<Bits, 1>(m, a, tile, h, t0, y);
    }
}

}  // namespace

void gemm_f32_avx2(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles<8>(m, a, tile_begin, tile_end, y);
  }
}

}  // namespace ptq::kernels
