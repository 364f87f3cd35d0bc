#pragma once
// ggml's tensor element types and block formats (ggml/src/ggml-common.h, ggml-quants.c), as GGUF
// files store them. One enum of every type id the gguf Python package (0.19.0) knows, a trait
// table with each type's block size and bytes per block, and for the types ptq reads a plain
// block struct (size checked by static_assert) and one scalar reference dequantizer.
//
// Blocks run along ne[0], a row's contiguous dimension (a linear weight's input features).
// Byte layouts (fp16 = IEEE half, little-endian; "low/high nibble of byte j" = elements j / j+16
// of a 32-block):
//   Q4_0  32 w, 18 B: fp16 d; u8 qs[16]              x = d * (q - 8), q in [0, 15]
//   Q4_1  32 w, 20 B: fp16 d, m; u8 qs[16]           x = d * q + m
//   Q5_0  32 w, 22 B: fp16 d; u8 qh[4]; u8 qs[16]    5th bit of element j = bit j of qh (LE u32);
//                                                    x = d * (q - 16)
//   Q5_1  32 w, 24 B: fp16 d, m; u8 qh[4]; u8 qs[16] x = d * q + m
//   Q8_0  32 w, 34 B: fp16 d; i8 qs[32]              x = d * q
//   Q2_K 256 w, 84 B: u8 scales[16] (low nibble scale, high nibble min of 16-sub-blocks);
//                     u8 qs[64] (2-bit); fp16 d, dmin x = d*sc * q - dmin*m
//   Q3_K 256 w, 110 B: u8 hmask[32]; u8 qs[64]; u8 scales[12] (16 6-bit scales, -32);
//                      fp16 d                        x = d*(sc-32) * (q2 - (hbit ? 0 : 4))
//   Q4_K 256 w, 144 B: fp16 d, dmin; u8 scales[12] (8 6-bit scales + 8 6-bit mins);
//                      u8 qs[128]                    x = d*sc * q - dmin*m
//   Q5_K 256 w, 176 B: fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//   Q6_K 256 w, 210 B: u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d
//                                                    x = d*sc * (q - 32), q in [0, 63]
//
// The reference dequantizers evaluate exactly what ggml's dequantize_row_* and the gguf Python
// package's numpy code evaluate: fp32 products and sums, each rounded separately (ptq builds with
// -std=c++20, so the compiler contracts nothing into FMAs). The results are bit-identical to
// gguf.quants.dequantize (tests/test_gguf_numpy.cpp).
#include <cstddef>
#include <cstdint>
#include <string>

namespace ptq {

inline constexpr int kQK = 32;     // weights per block of the simple formats
inline constexpr int kQK_K = 256;  // weights per K-quant super-block
inline constexpr int kKScaleSize = 12;

// ggml_type ids (gguf constants.py GGMLQuantizationType); gaps are ids ggml has retired.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
};

// Dequantizes `n` elements (a multiple of the block size) from blocks at `src` (any alignment).
using DequantizeRowFn = void (*)(const uint8_t* src, float* dst, int64_t n);

struct GgmlTypeTraits {
  GgmlType type;
  const char* name;
  uint32_t block_size;  // elements per block
  uint32_t type_size;   // bytes per block
  DequantizeRowFn dequantize;  // nullptr: ptq does not read this type
};

// The traits of type id `id`, or nullptr when ggml has no such type.
const GgmlTypeTraits* find_ggml_type(uint32_t id);
const GgmlTypeTraits& ggml_traits(GgmlType t);
const char* ggml_type_name(GgmlType t);
// "F32, F16, ..." for messages.
std::string dequantizable_ggml_types();

// Bytes of `n` elements of `t` (n a multiple of its block size).
inline uint64_t ggml_row_bytes(const GgmlTypeTraits& t, uint64_t n) {
  return n / t.block_size * t.type_size;
}

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d, dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[kKScaleSize];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Scalar references, ggml's signature: `k` elements from k / block_size blocks.
void dequantize_row_f32_ref(const float* x, float* y, int64_t k);
void dequantize_row_f16_ref(const uint16_t* x, float* y, int64_t k);
void dequantize_row_bf16_ref(const uint16_t* x, float* y, int64_t k);
void dequantize_row_q4_0_ref(const BlockQ4_0* x, float* y, int64_t k);
void dequantize_row_q4_1_ref(const BlockQ4_1* x, float* y, int64_t k);
void dequantize_row_q5_0_ref(const BlockQ5_0* x, float* y, int64_t k);
void dequantize_row_q5_1_ref(const BlockQ5_1* x, float* y, int64_t k);
void dequantize_row_q8_0_ref(const BlockQ8_0* x, float* y, int64_t k);
void dequantize_row_q2_K_ref(const BlockQ2_K* x, float* y, int64_t k);
void dequantize_row_q3_K_ref(const BlockQ3_K* x, float* y, int64_t k);
void dequantize_row_q4_K_ref(const BlockQ4_K* x, float* y, int64_t k);
void dequantize_row_q5_K_ref(const BlockQ5_K* x, float* y, int64_t k);
void dequantize_row_q6_K_ref(const BlockQ6_K* x, float* y, int64_t k);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K `scales` array.
void k_quant_scale_min(int j, const uint8_t* scales, uint8_t* scale, uint8_t* min);

// The inverses of the K-quant dequantizers: one super-block from its 256 codes (element order),
// its sub-blocks' scale codes `sc` and min codes `m` as the dequantizers read them (Q3_K: the
// stored 6-bit value, scale + 32; Q6_K: the int8 scale), and the fp16 bits of d and dmin.
// Dequantizing the result gives d·sc·q − dmin·m (Q2_K, Q4_K, Q5_K), d·(sc − 32)·(q − 4) (Q3_K),
// d·sc·(q − 32) (Q6_K) for every element.
BlockQ2_K pack_q2_K(const uint8_t* q, const uint8_t* sc, const uint8_t* m, uint16_t d, uint16_t dmin);
BlockQ3_K pack_q3_K(const uint8_t* q, const uint8_t* sc, uint16_t d);
BlockQ4_K pack_q4_K(const uint8_t* q, const uint8_t* sc, const uint8_t* m, uint16_t d, uint16_t dmin);
BlockQ5_K pack_q5_K(const uint8_t* q, const uint8_t* sc, const uint8_t* m, uint16_t d, uint16_t dmin);
BlockQ6_K pack_q6_K(const uint8_t* q, const int8_t* sc, uint16_t d);

}  // namespace ptq
