#pragma once
// Vector traits of the AVX2 + FMA (+ F16C) path: 8 fp32 / int32 lanes, so a 16-row tile is processed as
// two halves of 8 rows (kParts = 2), each half of a 64-byte quad vector being 32 bytes. The
// templates of simd_kernels.h are written once over a traits type; kernels_avx2.cpp
// instantiates them with this one. Every function carries a target attribute.
//
// vpmaddubsw multiplies u8 codes by s8 activations and adds byte pairs into int16; with codes
// ≤ 15 and |x̂| ≤ 127 the 8 quads of a block sum to at most 8·2·15·127 = 30480 < 2^15, so a
// block is accumulated in int16 and widened once (vpmaddwd by ones). 8-bit codes are split
// into nibbles to stay inside that bound.
#include <immintrin.h>

#include <cstring>

#include "formats/kernels/kernels.h"

#define PTQ_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace ptq::kernels {

struct Avx2 {
  using F = __m256;
  using I = __m256i;
  static constexpr int kLanes = 8;
  static constexpr int kParts = kTileRows / kLanes;
  static constexpr int kGemmTokens = 2;
  static constexpr int kXbVectors = 2;  // 4 tokens × 2 vectors = 8 of the 16 ymm registers

  // ---- fp32 arithmetic ----
  static PTQ_AVX2 inline F zero() { return _mm256_setzero_ps(); }
  static PTQ_AVX2 inline F set1(float v) { return _mm256_set1_ps(v); }
  static PTQ_AVX2 inline F add(F a, F b) { return _mm256_add_ps(a, b); }
  static PTQ_AVX2 inline F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static PTQ_AVX2 inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static PTQ_AVX2 inline F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static PTQ_AVX2 inline F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static PTQ_AVX2 inline F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static PTQ_AVX2 inline F loadu(const float* p) { return _mm256_loadu_ps(p); }
  static PTQ_AVX2 inline void storeu(float* p, F v) { _mm256_storeu_ps(p, v); }
  static PTQ_AVX2 inline F loadu(const uint16_t* fp16) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)fp16)); }
  static PTQ_AVX2 inline I first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // The first n lanes (0 < n ≤ kLanes); the rest read as +0 and are never written.
  static PTQ_AVX2 inline F load_first(const float* p, int n) { return _mm256_maskload_ps(p, first(n)); }
  static PTQ_AVX2 inline void store_first(float* p, F v, int n) { _mm256_maskstore_ps(p, first(n), v); }
  // 8 u8 values as floats (integer zero points).
  static PTQ_AVX2 inline F load_u8(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p)));
  }
  static PTQ_AVX2 inline void store_rows(float* dst, F v, int valid) {
    if (valid >= kLanes) {
      _mm256_storeu_ps(dst, v);
    } else if (valid > 0) {
      float tmp[kLanes];
      _mm256_storeu_ps(tmp, v);
      std::memcpy(dst, tmp, sizeof(float) * valid);
    }
  }

  // ---- packed blocks: quad vectors of one block (decoded in simd_kernels.h) ----
  // Half h (rows 8h..8h+7) of vector v of the block's codes.
  static PTQ_AVX2 inline I load_codes(const uint8_t* block, int v, int h) {
    return _mm256_load_si256((const __m256i*)(block + v * kQuadBytes + 32 * h));
  }
  static PTQ_AVX2 inline I set1_u8(uint8_t v) { return _mm256_set1_epi8(char(v)); }
  static PTQ_AVX2 inline I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static PTQ_AVX2 inline I or_(I a, I b) { return _mm256_or_si256(a, b); }
  template <int N>
  static PTQ_AVX2 inline I srli16(I a) { return _mm256_srli_epi16(a, N); }
  template <int N>
  static PTQ_AVX2 inline I slli16(I a) { return _mm256_slli_epi16(a, N); }

  static PTQ_AVX2 inline I broadcast4(const int8_t* x) {
    int32_t v;
    std::memcpy(&v, x, sizeof v);
    return _mm256_set1_epi32(v);
  }

  // Σ over the block of code·x̂ for 8 rows, as int32.
  template <int Bits>
  static PTQ_AVX2 inline I dot(const I quad[kQuadsPerBlock], const int8_t* xq) {
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

  // ---- packed blocks (fp32 arithmetic) ----
  // Blocks are decoded to one byte per code; column c's 8 codes are byte c mod 4 of each 32-bit
  // lane, shifted down, masked and converted, and multiplied by the plain x.
  static constexpr bool kFp32RawCodes = false;
  template <int Bits>
  static PTQ_AVX2 inline F fp32_column(const I src[kQuadsPerBlock], int c) {
    const int lane_byte = c % kQuadCols;
    const __m256i shifted = _mm256_srli_epi32(src[c / kQuadCols], 8 * lane_byte);
    const __m256i code = lane_byte == 3 ? shifted : _mm256_and_si256(shifted, _mm256_set1_epi32(0xFF));
    return _mm256_cvtepi32_ps(code);
  }
  static const float* fp32_x(const FloatActivations& a, int t) { return a.token_x(t); }

  // ---- in-register butterflies (FWHT): lane l pairs with lane l ^ h, h ∈ {1, 2, 4} ----
  static constexpr int kMaxInRegisterSpan = 4;
  template <int H>
  static PTQ_AVX2 inline F partner(F v) {
    if constexpr (H == 1) return _mm256_permute_ps(v, 0xB1);
    else if constexpr (H == 2) return _mm256_permute_ps(v, 0x4E);
    else return _mm256_permute2f128_ps(v, v, 1);
  }
  // Lanes with bit H clear get v + p (a + b), the others p − v (a − b).
  template <int H>
  static PTQ_AVX2 inline F butterfly(F v) {
    constexpr int high = H == 1 ? 0xAA : H == 2 ? 0xCC : 0xF0;
    const F p = partner<H>(v);
    return _mm256_blend_ps(_mm256_add_ps(v, p), _mm256_sub_ps(p, v), high);
  }

  // ---- CSR gathers: 16 chains as two vectors (chains 0–7, 8–15) ----
  static PTQ_AVX2 inline F gather(const float* base, const int32_t* idx) {
    return _mm256_i32gather_ps(base, _mm256_loadu_si256((const __m256i*)idx), 4);
  }
  static PTQ_AVX2 inline F gather(const float* base, const int32_t* idx, int n) {
    const I mask = first(n);
    const I i = _mm256_maskload_epi32(idx, mask);
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, i, _mm256_castsi256_ps(mask), 4);
  }
  static PTQ_AVX2 inline F fmadd_first(F a, F b, F c, int n) {
    return _mm256_blendv_ps(c, _mm256_fmadd_ps(a, b, c), _mm256_castsi256_ps(first(n)));
  }
  // c_l + c_{l+8} (the two vectors), then + 4 lanes, + 2, + 1: the tree every path sums in.
  static constexpr int kChainVectors = 2;
  static PTQ_AVX2 inline float tree_sum(const F c[kChainVectors]) {
    const __m256 s8 = _mm256_add_ps(c[0], c[1]);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
  }
};

}  // namespace ptq::kernels
