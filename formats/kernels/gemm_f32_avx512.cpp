// AVX-512 kernels of the fp32 arithmetic (kernels.h): for each column c of a block, the 16
// rows' codes are masked in place out of their 64-byte quad vector (code·2^e, e =
// code_bit_offset) and converted by vcvtudq2ps; one FMA with the broadcast x·2^−e then feeds
// 16 rows. No shifts: and + convert + FMA per 16 weights. Four FMA chains per token (one per
// column of a quad) hide the FMA latency; a GEMM keeps 4 tokens' chains in registers and
// decodes each column once for them.
#include <immintrin.h>

#include "formats/kernels/decode_avx512.h"
#include "formats/kernels/kernels.h"

namespace ptq::kernels {

namespace {

template <int Bits>
constexpr uint32_t kMaxCode = Bits == 3 ? 7u : (1u << Bits) - 1u;

// The vector holding column c's codes: raw for 2, 4 and 8 bits, decoded bytes for 3 bits.
template <int Bits>
PTQ_AVX512 inline void block_sources(const uint8_t* block, __m512i src[kQuadsPerBlock]) {
  if constexpr (Bits == 3) {
    decode_block<3>(block, src);
  } else {
    constexpr int quads_per_vector = 8 / Bits;
    for (int j = 0; j < kQuadsPerBlock; ++j) src[j] = _mm512_load_si512(block + (j / quads_per_vector) * kQuadBytes);
  }
}

template <int Bits, int TB>
PTQ_AVX512 void tile_tokens(const PackedMatrix& m, const FloatActivations& a, int tile, int t0, float* y) {
  const uint8_t* codes = m.tile_codes(tile);
  const GroupParams* params = m.tile_params(tile);
  const float* xs[TB];
  for (int t = 0; t < TB; ++t) xs[t] = a.token_x_shifted(t0 + t);
  __m512 yacc[TB];
  for (int t = 0; t < TB; ++t) yacc[t] = _mm512_setzero_ps();
  for (int g = 0; g < m.groups; ++g) {
    __m512 chain[TB][kQuadCols];
    for (int t = 0; t < TB; ++t)
      for (int i = 0; i < kQuadCols; ++i) chain[t][i] = _mm512_setzero_ps();
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      __m512i src[kQuadsPerBlock];
      block_sources<Bits>(codes + size_t(b) * sizeof(Block<Bits>), src);
      const size_t p0 = size_t(b) * kBlockCols;
#pragma GCC unroll 32
      for (int c = 0; c < kBlockCols; ++c) {
        const __m512i mask = _mm512_set1_epi32(int(kMaxCode<Bits> << code_bit_offset(Bits, c)));
        const __m512 w = _mm512_cvtepu32_ps(_mm512_and_si512(src[c / kQuadCols], mask));
        for (int t = 0; t < TB; ++t)
          chain[t][c % kQuadCols] = _mm512_fmadd_ps(w, _mm512_set1_ps(xs[t][p0 + c]), chain[t][c % kQuadCols]);
      }
    }
    const __m512 scale = _mm512_loadu_ps(params[g].scale);
    const __m512 zero = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)params[g].zero)));
    for (int t = 0; t < TB; ++t) {
      const __m512 accq = _mm512_add_ps(_mm512_add_ps(chain[t][0], chain[t][1]), _mm512_add_ps(chain[t][2], chain[t][3]));
      const __m512 centered = _mm512_fnmadd_ps(zero, _mm512_set1_ps(a.token_xsum(t0 + t)[g]), accq);
      yacc[t] = _mm512_fmadd_ps(scale, centered, yacc[t]);
    }
  }
  const int valid = m.rows - tile * kTileRows < kTileRows ? m.rows - tile * kTileRows : kTileRows;
  const __mmask16 row_mask = __mmask16((1u << valid) - 1u);
  for (int t = 0; t < TB; ++t) _mm512_mask_storeu_ps(y + size_t(t0 + t) * m.rows + tile * kTileRows, row_mask, yacc[t]);
}

template <int Bits>
PTQ_AVX512 void tiles(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end, float* y) {
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

}  // namespace

void gemm_f32_avx512(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end, float* y) {
  switch (m.bits) {
    case 2: return tiles<2>(m, a, tile_begin, tile_end, y);
    case 3: return tiles<3>(m, a, tile_begin, tile_end, y);
    case 4: return tiles<4>(m, a, tile_begin, tile_end, y);
    case 8: return tiles<8>(m, a, tile_begin, tile_end, y);
  }
}

}  // namespace ptq::kernels
