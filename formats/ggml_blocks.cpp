#include "formats/ggml_blocks.h"

#include <algorithm>
#include <cstring>

#include "ptq/error.h"
#include "ptq/tensor.h"

namespace ptq {

void dequantize_row_f32_ref(const float* x, float* y, int64_t k) {
  std::memcpy(y, x, static_cast<size_t>(k) * sizeof(float));
}

void dequantize_row_f16_ref(const uint16_t* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k; ++i) y[i] = f16_to_f32(x[i]);
}

void dequantize_row_bf16_ref(const uint16_t* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k; ++i) y[i] = bf16_to_f32(x[i]);
}

void dequantize_row_q4_0_ref(const BlockQ4_0* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = float((x[i].qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = float((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1_ref(const BlockQ4_1* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = float(x[i].qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = float(x[i].qs[j] >> 4) * d + m;
    }
  }
}

// The 5-bit codes of a Q5 block: low nibbles from qs, the fifth bit of element e from bit e of qh.
static void q5_codes(const uint8_t* qh_bytes, const uint8_t* qs, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = (qs[j] & 0x0F) | int(((qh >> j) & 1u) << 4);
    q[j + kQK / 2] = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
  }
}

void dequantize_row_q5_0_ref(const BlockQ5_0* x, float* y, int64_t k) {
  int q[kQK];
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = f16_to_f32(x[i].d);
    q5_codes(x[i].qh, x[i].qs, q);
    for (int j = 0; j < kQK; ++j) y[j] = float(q[j] - 16) * d;
  }
}

void dequantize_row_q5_1_ref(const BlockQ5_1* x, float* y, int64_t k) {
  int q[kQK];
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
    q5_codes(x[i].qh, x[i].qs, q);
    for (int j = 0; j < kQK; ++j) y[j] = float(q[j]) * d + m;
  }
}

void dequantize_row_q8_0_ref(const BlockQ8_0* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = float(x[i].qs[j]) * d;
  }
}

// Q2_K and Q3_K: two halves of 128; in each, four 2-bit planes (shift 0, 2, 4, 6) of 32 bytes,
// each plane two sub-blocks of 16 with their own scale.
void dequantize_row_q2_K_ref(const BlockQ2_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int sub = 0; sub < 2; ++sub) {
          const uint8_t sc = x[i].scales[is++];
          const float dl = d * float(sc & 0x0F), ml = dmin * float(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * sub] >> shift) & 3) - ml;
        }
  }
}

// Scale i of 16: low 4 bits from byte i (i < 8) or the high nibble of byte i - 8; high 2 bits from
// bits 2*(i/4) of byte 8 + i % 4.
static int q3_K_scale(const uint8_t* s, int i) {
  const int low = i < 8 ? (s[i] & 0x0F) : (s[i - 8] >> 4);
  const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (low | (high << 4)) - 32;
}

void dequantize_row_q3_K_ref(const BlockQ3_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* q = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    int is = 0;
    uint8_t bit = 1;  // the hmask bit runs over all eight planes of both halves
    for (int half = 0; half < 2; ++half, q += 32)
      for (int shift = 0; shift < 8; shift += 2, bit = uint8_t(bit << 1))
        for (int sub = 0; sub < 2; ++sub) {
          const float dl = d * float(q3_K_scale(x[i].scales, is++));
          for (int l = 0; l < 16; ++l) {
            const int idx = l + 16 * sub;
            const int v = ((q[idx] >> shift) & 3) - ((hm[idx] & bit) ? 0 : 4);
            *y++ = dl * float(v);
          }
        }
  }
}

void k_quant_scale_min(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = uint8_t((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *min = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void dequantize_row_q4_K_ref(const BlockQ4_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
      uint8_t sc, m;
      k_quant_scale_min(j, x[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      k_quant_scale_min(j + 1, x[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0x0F) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_K_ref(const BlockQ5_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    for (int j = 0; j < 8; j += 2, ql += 32) {
      uint8_t sc, m;
      k_quant_scale_min(j, x[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      k_quant_scale_min(j + 1, x[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      const uint8_t u1 = uint8_t(1u << j), u2 = uint8_t(2u << j);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
  }
}

void dequantize_row_q6_K_ref(const BlockQ6_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[is]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

// Element e of a Q2_K/Q3_K super-block sits in byte (e / 128)·32 + e % 32 of qs, at bit
// 2·((e % 128) / 32); Q3_K's third bit in hmask[e % 32], bit (e / 128)·4 + (e % 128) / 32.
static void put_low_2bits(const uint8_t* q, uint8_t* qs) {
  for (int e = 0; e < kQK_K; ++e) qs[(e / 128) * 32 + e % 32] |= uint8_t((q[e] & 3) << (2 * ((e % 128) / 32)));
}

BlockQ2_K pack_q2_K(const uint8_t* q, const uint8_t* sc, const uint8_t* m, uint16_t d, uint16_t dmin) {
  BlockQ2_K b{};
  put_low_2bits(q, b.qs);
  for (int i = 0; i < kQK_K / 16; ++i) b.scales[i] = uint8_t((sc[i] & 0x0F) | (m[i] & 0x0F) << 4);
  b.d = d;
  b.dmin = dmin;
  return b;
}

BlockQ3_K pack_q3_K(const uint8_t* q, const uint8_t* sc, uint16_t d) {
  BlockQ3_K b{};
  put_low_2bits(q, b.qs);
  for (int e = 0; e < kQK_K; ++e)
    if (q[e] & 4) b.hmask[e % 32] |= uint8_t(1u << ((e / 128) * 4 + (e % 128) / 32));
  for (int i = 0; i < kQK_K / 16; ++i) {  // q3_K_scale's layout
    if (i < 8) b.scales[i] |= uint8_t(sc[i] & 0x0F);
    else b.scales[i - 8] |= uint8_t((sc[i] & 0x0F) << 4);
    b.scales[8 + i % 4] |= uint8_t(((sc[i] >> 4) & 3) << (2 * (i / 4)));
  }
  b.d = d;
  return b;
}

namespace {

// k_quant_scale_min's layout, inverted.
void put_scale_min(int j, uint8_t sc, uint8_t m, uint8_t* s) {
  if (j < 4) {
    s[j] = uint8_t((s[j] & 0xC0) | (sc & 63));
    s[j + 4] = uint8_t((s[j + 4] & 0xC0) | (m & 63));
  } else {
    s[j + 4] = uint8_t((sc & 0x0F) | (m & 0x0F) << 4);
    s[j - 4] = uint8_t((s[j - 4] & 63) | ((sc >> 4) & 3) << 6);
    s[j] = uint8_t((s[j] & 63) | ((m >> 4) & 3) << 6);
  }
}

}  // namespace

// Element e of a Q4_K/Q5_K super-block: sub-block j = e / 32, byte (j / 2)·32 + e % 32 of qs, the
// low nibble for even j; Q5_K's fifth bit is bit j of qh[e % 32].
BlockQ4_K pack_q4_K(const uint8_t* q, const uint8_t* sc, const uint8_t* m, uint16_t d, uint16_t dmin) {
  BlockQ4_K b{};
  for (int e = 0; e < kQK_K; ++e) {
    const int j = e / 32;
    b.qs[(j / 2) * 32 + e % 32] |= uint8_t((q[e] & 0x0F) << (4 * (j % 2)));
  }
  for (int j = 0; j < 8; ++j) put_scale_min(j, sc[j], m[j], b.scales);
  b.d = d;
  b.dmin = dmin;
  return b;
}

// Q4_K's fields and the fifth bits.
BlockQ5_K pack_q5_K(const uint8_t* q, const uint8_t* sc, const uint8_t* m, uint16_t d, uint16_t dmin) {
  const BlockQ4_K low = pack_q4_K(q, sc, m, d, dmin);
  BlockQ5_K b{};
  b.d = low.d;
  b.dmin = low.dmin;
  std::copy_n(low.scales, sizeof low.scales, b.scales);
  std::copy_n(low.qs, sizeof low.qs, b.qs);
  for (int e = 0; e < kQK_K; ++e)
    if (q[e] & 0x10) b.qh[e % 32] |= uint8_t(1u << (e / 32));
  return b;
}

// Element e of a Q6_K super-block: half h = e / 128, plane p = (e % 128) / 32, l = e % 32; its low
// nibble in ql[64h + l + 32·(p % 2)] (high nibble for p ≥ 2), its top two bits in qh[32h + l] at
// bit 2p; sub-block e / 16.
BlockQ6_K pack_q6_K(const uint8_t* q, const int8_t* sc, uint16_t d) {
  BlockQ6_K b{};
  for (int e = 0; e < kQK_K; ++e) {
    const int h = e / 128, p = (e % 128) / 32, l = e % 32;
    b.ql[64 * h + l + 32 * (p % 2)] |= uint8_t((q[e] & 0x0F) << (4 * (p / 2)));
    b.qh[32 * h + l] |= uint8_t(((q[e] >> 4) & 3) << (2 * p));
  }
  for (int i = 0; i < kQK_K / 16; ++i) b.scales[i] = sc[i];
  b.d = d;
  return b;
}

namespace {

// Mapped tensor data carries no alignment guarantee beyond the file's, so blocks are copied into
// a properly aligned buffer before the typed reference reads them.
template <typename Block, void (*Ref)(const Block*, float*, int64_t), int kPerBlock>
void dequantize_unaligned(const uint8_t* src, float* dst, int64_t n) {
  constexpr int64_t kChunk = 64;  // blocks per copy
  Block buf[kChunk];
  const int64_t blocks = n / kPerBlock;
  for (int64_t b = 0; b < blocks; b += kChunk) {
    const int64_t m = blocks - b < kChunk ? blocks - b : kChunk;
    std::memcpy(buf, src + b * int64_t(sizeof(Block)), static_cast<size_t>(m) * sizeof(Block));
    Ref(buf, dst + b * kPerBlock, m * kPerBlock);
  }
}

constexpr GgmlTypeTraits kTraits[] = {
    {GgmlType::F32, "F32", 1, 4, dequantize_unaligned<float, dequantize_row_f32_ref, 1>},
    {GgmlType::F16, "F16", 1, 2, dequantize_unaligned<uint16_t, dequantize_row_f16_ref, 1>},
    {GgmlType::Q4_0, "Q4_0", 32, 18, dequantize_unaligned<BlockQ4_0, dequantize_row_q4_0_ref, kQK>},
    {GgmlType::Q4_1, "Q4_1", 32, 20, dequantize_unaligned<BlockQ4_1, dequantize_row_q4_1_ref, kQK>},
    {GgmlType::Q5_0, "Q5_0", 32, 22, dequantize_unaligned<BlockQ5_0, dequantize_row_q5_0_ref, kQK>},
    {GgmlType::Q5_1, "Q5_1", 32, 24, dequantize_unaligned<BlockQ5_1, dequantize_row_q5_1_ref, kQK>},
    {GgmlType::Q8_0, "Q8_0", 32, 34, dequantize_unaligned<BlockQ8_0, dequantize_row_q8_0_ref, kQK>},
    {GgmlType::Q8_1, "Q8_1", 32, 36, nullptr},
    {GgmlType::Q2_K, "Q2_K", 256, 84, dequantize_unaligned<BlockQ2_K, dequantize_row_q2_K_ref, kQK_K>},
    {GgmlType::Q3_K, "Q3_K", 256, 110, dequantize_unaligned<BlockQ3_K, dequantize_row_q3_K_ref, kQK_K>},
    {GgmlType::Q4_K, "Q4_K", 256, 144, dequantize_unaligned<BlockQ4_K, dequantize_row_q4_K_ref, kQK_K>},
    {GgmlType::Q5_K, "Q5_K", 256, 176, dequantize_unaligned<BlockQ5_K, dequantize_row_q5_K_ref, kQK_K>},
    {GgmlType::Q6_K, "Q6_K", 256, 210, dequantize_unaligned<BlockQ6_K, dequantize_row_q6_K_ref, kQK_K>},
    {GgmlType::Q8_K, "Q8_K", 256, 292, nullptr},
    {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66, nullptr},
    {GgmlType::IQ2_XS, "IQ2_XS", 256, 74, nullptr},
    {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98, nullptr},
    {GgmlType::IQ1_S, "IQ1_S", 256, 50, nullptr},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, nullptr},
    {GgmlType::IQ3_S, "IQ3_S", 256, 110, nullptr},
    {GgmlType::IQ2_S, "IQ2_S", 256, 82, nullptr},
    {GgmlType::IQ4_XS, "IQ4_XS", 256, 136, nullptr},
    {GgmlType::I8, "I8", 1, 1, nullptr},
    {GgmlType::I16, "I16", 1, 2, nullptr},
    {GgmlType::I32, "I32", 1, 4, nullptr},
    {GgmlType::I64, "I64", 1, 8, nullptr},
    {GgmlType::F64, "F64", 1, 8, nullptr},
    {GgmlType::IQ1_M, "IQ1_M", 256, 56, nullptr},
    {GgmlType::BF16, "BF16", 1, 2, dequantize_unaligned<uint16_t, dequantize_row_bf16_ref, 1>},
    {GgmlType::TQ1_0, "TQ1_0", 256, 54, nullptr},
    {GgmlType::TQ2_0, "TQ2_0", 256, 66, nullptr},
    {GgmlType::MXFP4, "MXFP4", 32, 17, nullptr},
    {GgmlType::NVFP4, "NVFP4", 64, 36, nullptr},
    {GgmlType::Q1_0, "Q1_0", 128, 18, nullptr},
};

}  // namespace

const GgmlTypeTraits* find_ggml_type(uint32_t id) {
  for (const auto& t : kTraits)
    if (uint32_t(t.type) == id) return &t;
  return nullptr;
}

const GgmlTypeTraits& ggml_traits(GgmlType t) {
  const GgmlTypeTraits* p = find_ggml_type(uint32_t(t));
  PTQ_ASSERT(p != nullptr, "every GgmlType enumerator has a trait row");
  return *p;
}

const char* ggml_type_name(GgmlType t) { return ggml_traits(t).name; }

std::string dequantizable_ggml_types() {
  std::string s;
  for (const auto& t : kTraits) {
    if (!t.dequantize) continue;
    if (!s.empty()) s += ", ";
    s += t.name;
  }
  return s;
}

}  // namespace ptq
