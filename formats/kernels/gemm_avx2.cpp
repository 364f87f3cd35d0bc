// AVX2 + FMA kernels: each 64-byte quad vector is two 32-byte halves of 8 rows. vpmaddubsw
// multiplies u8 codes by s8 activations and adds byte pairs into int16; with codes ≤ 15 and
// |x̂| ≤ 127 the 8 quads of a block sum to at most 8·2·15·127 = 30480 < 2^15, so a block is
// accumulated in int16 and widened once (vpmaddwd by ones). 8-bit codes are split into
// nibbles to stay inside that bound. Selected at run time (dispatch.cpp).
#include <immintrin.h>

#include "formats/kernels/decode_avx2.h"
#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

PTQ_AVX2 inline void store_rows(float* dst, __m256 v, int valid) {
  if (valid >= kHalfRows) {
    _mm256_storeu_ps(dst, v);
  } else if (valid > 0) {
    float tmp[kHalfRows];
    _mm256_storeu_ps(tmp, v);
    std::memcpy(dst, tmp, sizeof(float) * valid);
  }
}

// Half h of one tile for tokens [t0, t0 + TB).
template <int Bits, int TB>
PTQ_AVX2 void half_tile_tokens(const PackedMatrix& m, const ActivationBlocks& a, int tile, int h, int t0, float* y) {
  const int first_row = tile * kTileRows + h * kHalfRows;
  if (first_row >= m.rows) return;
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  __m256 yacc[TB];
  for (int t = 0; t < TB; ++t) yacc[t] = _mm256_setzero_ps();
  for (int g = 0; g < m.groups; ++g) {
    __m256 gacc[TB];
    for (int t = 0; t < TB; ++t) gacc[t] = _mm256_setzero_ps();
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      __m256i quad[kQuadsPerBlock];
      decode_half<Bits>(codes + size_t(b) * sizeof(Block<Bits>), h, quad);
      for (int t = 0; t < TB; ++t) {
        const __m256i dot = block_dot<Bits>(quad, a.token_q(t0 + t) + size_t(b) * kBlockCols);
        gacc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a.token_scale(t0 + t)[b]), _mm256_cvtepi32_ps(dot), gacc[t]);
      }
    }
    const __m256 scale = _mm256_loadu_ps(params[g].scale + h * kHalfRows);
    const __m256 zero =
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(params[g].zero + h * kHalfRows))));
    for (int t = 0; t < TB; ++t) {
      const __m256 centered = _mm256_fnmadd_ps(zero, _mm256_set1_ps(a.token_group_sum(t0 + t)[g]), gacc[t]);
      yacc[t] = _mm256_fmadd_ps(scale, centered, yacc[t]);
    }
  }
  for (int t = 0; t < TB; ++t) store_rows(y + size_t(t0 + t) * m.rows + first_row, yacc[t], m.rows - first_row);
}

template <int Bits>
PTQ_AVX2 void tiles_gemm(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int h = 0; h < 2; ++h) {
      int t0 = 0;
      for (; t0 + 2 <= a.tokens; t0 += 2) half_tile_tokens<Bits, 2>(m, a, tile, h, t0, y);
      if (t0 < a.tokens) half_tile_tokens<Bits, 1>(m, a, tile, h, t0, y);
    }
}

template <int Bits>
PTQ_AVX2 void tiles_gemv(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int h = 0; h < 2; ++h) half_tile_tokens<Bits, 1>(m, a, tile, h, 0, y);
}

}  // namespace

void gemv_avx2(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles_gemv<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles_gemv<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles_gemv<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles_gemv<8>(m, a, tile_begin, tile_end, y);
  }
}

void gemm_avx2(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles_gemm<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles_gemm<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles_gemm<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles_gemm<8>(m, a, tile_begin, tile_end, y);
  }
}

}  // namespace ptq::kernels
