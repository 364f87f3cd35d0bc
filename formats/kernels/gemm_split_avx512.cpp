// AVX-512 VNNI kernels of the int8x3 arithmetic (kernels.h): each block's codes are decoded
// once into 8 quad vectors and multiplied by the three activation digits with vpdpbusd
// (24 per 16×32 block-tile, each 64 multiply-adds), then combined in fp32 per block. Tokens are
// processed one after the other (the block is re-decoded per token).
#include <immintrin.h>

#include "formats/kernels/decode_avx512.h"
#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

template <int Bits>
PTQ_AVX512 void tile_token(const PackedMatrix& m, const SplitActivations& a, int tile, int t, float* y) {
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  const float* d = a.token_scale(t);
  const int8_t* digit[kDigits];
  for (int k = 0; k < kDigits; ++k) digit[k] = a.token_digit(k, t);
  const __m512 step = _mm512_set1_ps(1.0f / float(1 << kDigitBits));
  __m512 yacc = _mm512_setzero_ps();
  for (int g = 0; g < m.groups; ++g) {
    __m512 gacc = _mm512_setzero_ps();
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      __m512i quad[kQuadsPerBlock];
      decode_block<Bits>(codes + size_t(b) * sizeof(Block<Bits>), quad);
      const size_t p0 = size_t(b) * kBlockCols;
      const __m512 d0 = _mm512_cvtepi32_ps(block_dot(quad, digit[0] + p0));
      const __m512 d1 = _mm512_cvtepi32_ps(block_dot(quad, digit[1] + p0));
      const __m512 d2 = _mm512_cvtepi32_ps(block_dot(quad, digit[2] + p0));
      const __m512 f = _mm512_fmadd_ps(_mm512_fmadd_ps(d2, step, d1), step, d0);
      gacc = _mm512_fmadd_ps(_mm512_set1_ps(d[b]), f, gacc);
    }
    const __m512 scale = _mm512_loadu_ps(params[g].scale);
    const __m512 zero = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)params[g].zero)));
    const __m512 centered = _mm512_fnmadd_ps(zero, _mm512_set1_ps(a.token_xsum(t)[g]), gacc);
    yacc = _mm512_fmadd_ps(scale, centered, yacc);
  }
  const int valid = m.rows - tile * kTileRows < kTileRows ? m.rows - tile * kTileRows : kTileRows;
  _mm512_mask_storeu_ps(y + size_t(t) * m.rows + tile * kTileRows, __mmask16((1u << valid) - 1u), yacc);
}

template <int Bits>
PTQ_AVX512 void tiles(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile)
    for (int t = 0; t < a.tokens; ++t) tile_token<Bits>(m, a, tile, t, y);
}

}  // namespace

void gemm_split_avx512(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles<8>(m, a, tile_begin, tile_end, y);
  }
}

}  // namespace ptq::kernels
