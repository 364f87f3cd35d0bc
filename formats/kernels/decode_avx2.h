#pragma once
// AVX2 decoding of half a packed block (8 rows) into 8 quad vectors of u8 codes (layout in
// packed_layout.h), shared by the int8 and fp32 kernels.
#include <immintrin.h>

#include <cstring>

#include "formats/kernels/packed_layout.h"

#define PTQ_AVX2 __attribute__((target("avx2,fma")))

namespace ptq::kernels {

constexpr int kHalfRows = kTileRows / 2;

PTQ_AVX2 inline __m256i load_half(const uint8_t* block, int v, int h) {
  return _mm256_load_si256((const __m256i*)(block + v * kQuadBytes + 32 * h));
}

// Unpacks half h (rows 8h..8h+7) of one block into its 8 quad vectors of u8 codes.
template <int Bits>
PTQ_AVX2 inline void decode_half(const uint8_t* block, int h, __m256i quad[kQuadsPerBlock]) {
  if constexpr (Bits == 8) {
    for (int j = 0; j < 8; ++j) quad[j] = load_half(block, j, h);
  } else if constexpr (Bits == 4) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int v = 0; v < 4; ++v) {
      const __m256i c = load_half(block, v, h);
      quad[2 * v] = _mm256_and_si256(c, low4);
      quad[2 * v + 1] = _mm256_and_si256(_mm256_srli_epi16(c, 4), low4);
    }
  } else {
    static_assert(Bits == 2 || Bits == 3);
    const __m256i low2 = _mm256_set1_epi8(0x03);
    for (int v = 0; v < 2; ++v) {
      const __m256i c = load_half(block, v, h);
      quad[4 * v] = _mm256_and_si256(c, low2);
      quad[4 * v + 1] = _mm256_and_si256(_mm256_srli_epi16(c, 2), low2);
      quad[4 * v + 2] = _mm256_and_si256(_mm256_srli_epi16(c, 4), low2);
      quad[4 * v + 3] = _mm256_and_si256(_mm256_srli_epi16(c, 6), low2);
    }
    if constexpr (Bits == 3) {
      const __m256i hb = load_half(block, 2, h);
      const __m256i bit2 = _mm256_set1_epi8(0x04);
      quad[0] = _mm256_or_si256(quad[0], _mm256_and_si256(_mm256_slli_epi16(hb, 2), bit2));
      quad[1] = _mm256_or_si256(quad[1], _mm256_and_si256(_mm256_slli_epi16(hb, 1), bit2));
      quad[2] = _mm256_or_si256(quad[2], _mm256_and_si256(hb, bit2));
      quad[3] = _mm256_or_si256(quad[3], _mm256_and_si256(_mm256_srli_epi16(hb, 1), bit2));
      quad[4] = _mm256_or_si256(quad[4], _mm256_and_si256(_mm256_srli_epi16(hb, 2), bit2));
      quad[5] = _mm256_or_si256(quad[5], _mm256_and_si256(_mm256_srli_epi16(hb, 3), bit2));
      quad[6] = _mm256_or_si256(quad[6], _mm256_and_si256(_mm256_srli_epi16(hb, 4), bit2));
      quad[7] = _mm256_or_si256(quad[7], _mm256_and_si256(_mm256_srli_epi16(hb, 5), bit2));
    }
  }
}

PTQ_AVX2 inline __m256i broadcast4(const int8_t* x) {
  int32_t v;
  std::memcpy(&v, x, sizeof v);
  return _mm256_set1_epi32(v);
}

// Σ over the block of code·x̂ for 8 rows, as int32.
template <int Bits>
PTQ_AVX2 inline __m256i block_dot(const __m256i quad[kQuadsPerBlock], const int8_t* xq) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (Bits == 8) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    for (int j = 0; j < kQuadsPerBlock; ++j) {
      const __m256i x = broadcast4(xq + kQuadCols * j);
      lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(_mm256_and_si256(quad[j], low4), x));
      hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(quad[j], 4), low4), x));
    }
    return _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(hi, ones), 4), _mm256_madd_epi16(lo, ones));
  } else {
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < kQuadsPerBlock; ++j)
      sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(quad[j], broadcast4(xq + kQuadCols * j)));
    return _mm256_madd_epi16(sum, ones);
  }
}

}  // namespace ptq::kernels
