// AVX-512 VNNI kernels: one 64-byte quad vector (16 rows × 4 columns of codes) times four
// int8 activations broadcast to every lane is one vpdpbusd, so each 512-bit load of 4-bit
// codes feeds 2 × 16 rows × 4 columns = 128 multiply-adds. Compiled with a target attribute so
// the library builds without -march=native; selected at run time (dispatch.cpp).
#include <immintrin.h>

#include "formats/kernels/decode_avx512.h"
#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

// One tile for tokens [t0, t0 + TB): the tile's codes are decoded once per block and reused by
// every token in registers.
template <int Bits, int TB>
PTQ_AVX512 void tile_tokens(const PackedMatrix& m, const ActivationBlocks& a, int tile, int t0, float* y) {
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  __m512 yacc[TB];
  for (int t = 0; t < TB; ++t) yacc[t] = _mm512_setzero_ps();
  for (int g = 0; g < m.groups; ++g) {
    __m512 gacc[TB];
    for (int t = 0; t < TB; ++t) gacc[t] = _mm512_setzero_ps();
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      __m512i quad[kQuadsPerBlock];
      decode_block<Bits>(codes + size_t(b) * sizeof(Block<Bits>), quad);
      for (int t = 0; t < TB; ++t) {
        const __m512i dot = block_dot(quad, a.token_q(t0 + t) + size_t(b) * kBlockCols);
        gacc[t] = _mm512_fmadd_ps(_mm512_set1_ps(a.token_scale(t0 + t)[b]), _mm512_cvtepi32_ps(dot), gacc[t]);
      }
    }
    const __m512 scale = _mm512_loadu_ps(params[g].scale);
    const __m512 zero = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)params[g].zero)));
    for (int t = 0; t < TB; ++t) {
      const __m512 centered = _mm512_fnmadd_ps(zero, _mm512_set1_ps(a.token_group_sum(t0 + t)[g]), gacc[t]);
      yacc[t] = _mm512_fmadd_ps(scale, centered, yacc[t]);
    }
  }
  const int valid = m.rows - tile * kTileRows < kTileRows ? m.rows - tile * kTileRows : kTileRows;
  const __mmask16 mask = __mmask16((1u << valid) - 1u);
  for (int t = 0; t < TB; ++t) _mm512_mask_storeu_ps(y + size_t(t0 + t) * m.rows + tile * kTileRows, mask, yacc[t]);
}

// Tokens in register-resident chunks of 4 (4 × (2 int + 1 fp) accumulators + 8 quads fit the
// 32 zmm registers), then the remainder.
template <int Bits>
PTQ_AVX512 void tiles_gemm(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile) {
    int t0 = 0;
    for (; t0 + 4 <= a.tokens; t0 += 4) tile_tokens<Bits, 4>(m, a, tile, t0, y);
    switch (a.tokens - t0) {
      case 3: tile_tokens<Bits, 3>(m, a, tile, t0, y); break;
      case 2: tile_tokens<Bits, 2>(m, a, tile, t0, y); break;
      case 1: tile_tokens<Bits, 1>(m, a, tile, t0, y); break;
      default: break;
    }
  }
}

template <int Bits>
PTQ_AVX512 void tiles_gemv(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  for (int tile = tile_begin; tile < tile_end; ++tile) tile_tokens<Bits, 1>(m, a, tile, 0, y);
}

}  // namespace

void gemv_avx512(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles_gemv<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles_gemv<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles_gemv<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles_gemv<8>(m, a, tile_begin, tile_end, y);
  }
}

void gemm_avx512(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles_gemm<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles_gemm<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles_gemm<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles_gemm<8>(m, a, tile_begin, tile_end, y);
  }
}

}  // namespace ptq::kernels
