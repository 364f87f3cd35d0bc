#pragma once
// AVX-512 decoding of one packed block into 8 quad vectors of u8 codes (layout in
// packed_layout.h), shared by the int8 (VNNI) and fp32 kernels. Functions carry a target
// attribute so the library builds without -march=native.
#include <immintrin.h>

#include <cstring>

#include "formats/kernels/packed_layout.h"

#define PTQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

namespace ptq::kernels {

// Unpacks one block into its 8 quad vectors of u8 codes (layout in packed_layout.h).
template <int Bits>
PTQ_AVX512 inline void decode_block(const uint8_t* block, __m512i quad[kQuadsPerBlock]) {
  if constexpr (Bits == 8) {
    for (int j = 0; j < 8; ++j) quad[j] = _mm512_load_si512(block + j * kQuadBytes);
  } else if constexpr (Bits == 4) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (int v = 0; v < 4; ++v) {
      const __m512i c = _mm512_load_si512(block + v * kQuadBytes);
      quad[2 * v] = _mm512_and_si512(c, low4);
      quad[2 * v + 1] = _mm512_and_si512(_mm512_srli_epi16(c, 4), low4);
    }
  } else {
    static_assert(Bits == 2 || Bits == 3);
    const __m512i low2 = _mm512_set1_epi8(0x03);
    for (int v = 0; v < 2; ++v) {
      const __m512i c = _mm512_load_si512(block + v * kQuadBytes);
      quad[4 * v] = _mm512_and_si512(c, low2);
      quad[4 * v + 1] = _mm512_and_si512(_mm512_srli_epi16(c, 2), low2);
      quad[4 * v + 2] = _mm512_and_si512(_mm512_srli_epi16(c, 4), low2);
      quad[4 * v + 3] = _mm512_and_si512(_mm512_srli_epi16(c, 6), low2);
    }
    if constexpr (Bits == 3) {
      // Bit j of each high byte is bit 2 of quad j: shift it to bit 2 (16-bit shifts by at most
      // 5 never move another byte's bits into bit 2) and mask.
      const __m512i h = _mm512_load_si512(block + 2 * kQuadBytes);
      const __m512i bit2 = _mm512_set1_epi8(0x04);
      quad[0] = _mm512_or_si512(quad[0], _mm512_and_si512(_mm512_slli_epi16(h, 2), bit2));
      quad[1] = _mm512_or_si512(quad[1], _mm512_and_si512(_mm512_slli_epi16(h, 1), bit2));
      quad[2] = _mm512_or_si512(quad[2], _mm512_and_si512(h, bit2));
      quad[3] = _mm512_or_si512(quad[3], _mm512_and_si512(_mm512_srli_epi16(h, 1), bit2));
      quad[4] = _mm512_or_si512(quad[4], _mm512_and_si512(_mm512_srli_epi16(h, 2), bit2));
      quad[5] = _mm512_or_si512(quad[5], _mm512_and_si512(_mm512_srli_epi16(h, 3), bit2));
      quad[6] = _mm512_or_si512(quad[6], _mm512_and_si512(_mm512_srli_epi16(h, 4), bit2));
      quad[7] = _mm512_or_si512(quad[7], _mm512_and_si512(_mm512_srli_epi16(h, 5), bit2));
    }
  }
}

PTQ_AVX512 inline __m512i broadcast4(const int8_t* x) {
  int32_t v;
  std::memcpy(&v, x, sizeof v);
  return _mm512_set1_epi32(v);
}

// Σ over the block of code·x̂ for 16 rows; two accumulators halve the vpdpbusd dependency chain.
PTQ_AVX512 inline __m512i block_dot(const __m512i quad[kQuadsPerBlock], const int8_t* xq) {
  __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
  for (int j = 0; j < kQuadsPerBlock; j += 2) {
    even = _mm512_dpbusd_epi32(even, quad[j], broadcast4(xq + kQuadCols * j));
    odd = _mm512_dpbusd_epi32(odd, quad[j + 1], broadcast4(xq + kQuadCols * (j + 1)));
  }
  return _mm512_add_epi32(even, odd);
}

}  // namespace ptq::kernels
