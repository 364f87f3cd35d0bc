#pragma once
// Vector traits of the AVX-512 path (F, BW, VL, VNNI): 16 fp32 / int32 lanes, so one vector
// holds a whole 16-row tile (kParts = 1). The templates of simd_kernels.h are written once over
// a traits type; kernels_avx512.cpp instantiates them with this one. Every function carries a
// target attribute, so the library builds without -march=native.
//
// One quad vector of u8 codes (16 rows × 4 columns, layout in packed_layout.h) times 4 int8
// activations broadcast to every lane is one vpdpbusd (64 multiply-adds).
#include <immintrin.h>

#include <cstring>

#include "formats/kernels/kernels.h"

#define PTQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

namespace ptq::kernels {

struct Avx512 {
  using F = __m512;
  using I = __m512i;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  static constexpr int kParts = kTileRows / kLanes;  // vectors per tile column
  // Tokens whose accumulators stay in registers in the int8 and fp32 GEMMs: 4 × (2 int + 1 fp)
  // accumulators + 8 quads fit the 32 zmm registers.
  static constexpr int kGemmTokens = 4;
  // Output vectors per register tile of the fp32 x·B kernel (4 tokens × 4 vectors = 16 zmm).
  static constexpr int kXbVectors = 4;

  // ---- fp32 arithmetic ----
  static PTQ_AVX512 inline F zero() { return _mm512_setzero_ps(); }
  static PTQ_AVX512 inline F set1(float v) { return _mm512_set1_ps(v); }
  static PTQ_AVX512 inline F add(F a, F b) { return _mm512_add_ps(a, b); }
  static PTQ_AVX512 inline F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static PTQ_AVX512 inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static PTQ_AVX512 inline F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static PTQ_AVX512 inline F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static PTQ_AVX512 inline F cvt(I v) { return _mm512_cvtepi32_ps(v); }
  static PTQ_AVX512 inline F loadu(const float* p) { return _mm512_loadu_ps(p); }
  static PTQ_AVX512 inline void storeu(float* p, F v) { _mm512_storeu_ps(p, v); }
  static PTQ_AVX512 inline F loadu(const uint16_t* fp16) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)fp16)); }
  static PTQ_AVX512 inline Mask first(int n) { return n >= kLanes ? Mask(0xFFFF) : Mask((1u << n) - 1u); }
  // The first n lanes (0 < n ≤ kLanes); the rest read as +0 and are never written.
  static PTQ_AVX512 inline F load_first(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static PTQ_AVX512 inline void store_first(float* p, F v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  // 16 u8 values as floats (integer zero points).
  static PTQ_AVX512 inline F load_u8(const uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p)));
  }
  // Rows [0, valid) of a tile column.
  static PTQ_AVX512 inline void store_rows(float* dst, F v, int valid) { store_first(dst, v, valid); }

  // ---- packed blocks: quad vectors of one block (decoded in simd_kernels.h) ----
  // Vector v of the block's codes for the whole tile (part is always 0).
  static PTQ_AVX512 inline I load_codes(const uint8_t* block, int v, int /*part*/) {
    return _mm512_load_si512(block + v * kQuadBytes);
  }
  static PTQ_AVX512 inline I set1_u8(uint8_t v) { return _mm512_set1_epi8(char(v)); }
  static PTQ_AVX512 inline I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static PTQ_AVX512 inline I or_(I a, I b) { return _mm512_or_si512(a, b); }
  template <int N>
  static PTQ_AVX512 inline I srli16(I a) { return _mm512_srli_epi16(a, N); }
  template <int N>
  static PTQ_AVX512 inline I slli16(I a) { return _mm512_slli_epi16(a, N); }

  static PTQ_AVX512 inline I broadcast4(const int8_t* x) {
    int32_t v;
    std::memcpy(&v, x, sizeof v);
    return _mm512_set1_epi32(v);
  }

  // Σ over the block of code·x̂ for 16 rows, as int32 (vpdpbusd takes full u8 codes, so Bits
  // does not matter); two accumulators halve the dependency chain.
  template <int Bits>
  static PTQ_AVX512 inline I dot(const I quad[kQuadsPerBlock], const int8_t* xq) {
    __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
    for (int j = 0; j < kQuadsPerBlock; j += 2) {
      even = _mm512_dpbusd_epi32(even, quad[j], broadcast4(xq + kQuadCols * j));
      odd = _mm512_dpbusd_epi32(odd, quad[j + 1], broadcast4(xq + kQuadCols * (j + 1)));
    }
    return _mm512_add_epi32(even, odd);
  }

  // ---- packed blocks (fp32 arithmetic) ----
  // Column c's 16 codes are masked in place out of their raw quad vector (code·2^e, e =
  // code_bit_offset) and converted by vcvtudq2ps; the kernel multiplies them by x·2^−e
  // (FloatActivations::x_shifted). 3-bit blocks are decoded to bytes first.
  static constexpr bool kFp32RawCodes = true;
  template <int Bits>
  static constexpr uint32_t kMaxCode = Bits == 3 ? 7u : (1u << Bits) - 1u;

  template <int Bits>
  static PTQ_AVX512 inline F fp32_column(const I src[kQuadsPerBlock], int c) {
    const __m512i mask = _mm512_set1_epi32(int(kMaxCode<Bits> << code_bit_offset(Bits, c)));
    return _mm512_cvtepu32_ps(_mm512_and_si512(src[c / kQuadCols], mask));
  }
  static const float* fp32_x(const FloatActivations& a, int t) { return a.token_x_shifted(t); }

  // ---- in-register butterflies (FWHT): lane l pairs with lane l ^ h, h ∈ {1, 2, 4, 8} ----
  static constexpr int kMaxInRegisterSpan = 8;
  template <int H>
  static PTQ_AVX512 inline F partner(F v) {
    if constexpr (H == 1) return _mm512_permute_ps(v, 0xB1);
    else if constexpr (H == 2) return _mm512_permute_ps(v, 0x4E);
    else if constexpr (H == 4) return _mm512_shuffle_f32x4(v, v, 0xB1);
    else return _mm512_shuffle_f32x4(v, v, 0x4E);
  }
  // Lanes with bit H clear get v + p (a + b), the others p − v (a − b).
  template <int H>
  static PTQ_AVX512 inline F butterfly(F v) {
    constexpr unsigned high = H == 1 ? 0xAAAA : H == 2 ? 0xCCCC : H == 4 ? 0xF0F0 : 0xFF00;
    const F p = partner<H>(v);
    return _mm512_mask_sub_ps(_mm512_add_ps(v, p), Mask(high), p, v);
  }

  // ---- CSR gathers: 16 chains ----
  static PTQ_AVX512 inline F gather(const float* base, const int32_t* idx) {
    return _mm512_i32gather_ps(_mm512_loadu_si512(idx), base, 4);
  }
  static PTQ_AVX512 inline F gather(const float* base, const int32_t* idx, int n) {
    const __m512i i = _mm512_maskz_loadu_epi32(first(n), idx);
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), first(n), i, base, 4);
  }
  // Lanes [0, n) get fma(a, b, c), the others keep c.
  static PTQ_AVX512 inline F fmadd_first(F a, F b, F c, int n) { return _mm512_mask3_fmadd_ps(a, b, c, first(n)); }
  // ((c_l + c_{l+8}) then + 4 lanes, + 2, + 1): the tree every path sums 16 chains in.
  static constexpr int kChainVectors = 1;
  static PTQ_AVX512 inline float tree_sum(const F c[kChainVectors]) {
    const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c[0]), 1));
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(c[0]), high);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
  }
};

}  // namespace ptq::kernels
