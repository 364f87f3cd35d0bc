// ggml block formats: each *_ref dequantizer against blocks packed here from the layouts in
// formats/ggml_blocks.h (an independent encoder), with random codes and scales. The values are
// products of small integers and fp16 numbers, exact in fp32, so the tolerance is zero.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "formats/ggml_blocks.h"
#include "ptq/tensor.h"

namespace ptq {
namespace {

constexpr float kExact = 0.0f;  // named tolerance: every case below is exactly representable

// A random fp16 with few mantissa bits (so products with small integers stay exact).
uint16_t random_scale(std::mt19937_64& rng, bool allow_negative = true) {
  const int exp = int(rng() % 12) - 8;   // 2^-8 .. 2^3
  const int mant = int(rng() % 8);       // 3 mantissa bits
  float v = std::ldexp(1.0f + float(mant) / 8.0f, exp);
  if (allow_negative && (rng() & 1)) v = -v;
  return f32_to_f16(v);
}

int code(std::mt19937_64& rng, int n) { return int(rng() % uint64_t(n)); }

// Checks the typed reference and the trait-table entry (given unaligned bytes) agree with `want`.
template <typename Block>
void check(GgmlType type, const std::vector<Block>& blocks, void (*ref)(const Block*, float*, int64_t),
           const std::vector<float>& want) {
  const int64_t n = int64_t(want.size());
  std::vector<float> got(want.size());
  ref(blocks.data(), got.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[size_t(i)], want[size_t(i)], kExact) << ggml_type_name(type) << " at " << i;
  std::vector<uint8_t> unaligned(blocks.size() * sizeof(Block) + 1);
  std::memcpy(unaligned.data() + 1, blocks.data(), blocks.size() * sizeof(Block));
  std::vector<float> got2(want.size());
  ggml_traits(type).dequantize(unaligned.data() + 1, got2.data(), n);
  EXPECT_EQ(std::memcmp(got.data(), got2.data(), got.size() * 4), 0) << ggml_type_name(type);
  EXPECT_EQ(ggml_traits(type).type_size, sizeof(Block));
}

TEST(GgmlBlocks, TraitTableMatchesGgufConstants) {
  // (id, name, block size, bytes) from gguf-py constants.py GGML_QUANT_SIZES.
  const std::tuple<uint32_t, const char*, uint32_t, uint32_t> expected[] = {
      {0, "F32", 1, 4},     {1, "F16", 1, 2},      {2, "Q4_0", 32, 18},   {3, "Q4_1", 32, 20},
      {6, "Q5_0", 32, 22},  {7, "Q5_1", 32, 24},   {8, "Q8_0", 32, 34},   {10, "Q2_K", 256, 84},
      {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210},
      {30, "BF16", 1, 2},   {15, "Q8_K", 256, 292}, {23, "IQ4_XS", 256, 136}};
  for (const auto& [id, name, bs, ts] : expected) {
    const GgmlTypeTraits* t = find_ggml_type(id);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_STREQ(t->name, name);
    EXPECT_EQ(t->block_size, bs) << name;
    EXPECT_EQ(t->type_size, ts) << name;
  }
  EXPECT_EQ(find_ggml_type(4), nullptr);  // retired ids stay unknown
  EXPECT_EQ(find_ggml_type(99), nullptr);
  EXPECT_EQ(find_ggml_type(23)->dequantize, nullptr);  // known, not read
  EXPECT_EQ(dequantizable_ggml_types(), "F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16");
}

TEST(GgmlBlocks, SimpleBlocks) {
  std::mt19937_64 rng(1);
  const int nb = 5;
  {
    std::vector<BlockQ4_0> b(nb);
    std::vector<float> want;
    for (auto& blk : b) {
      blk.d = random_scale(rng);
      int q[32];
      for (int& c : q) c = code(rng, 16);
      for (int j = 0; j < 16; ++j) blk.qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
      for (int j = 0; j < 32; ++j) want.push_back(float(q[j] - 8) * f16_to_f32(blk.d));
    }
    check(GgmlType::Q4_0, b, dequantize_row_q4_0_ref, want);
  }
  {
    std::vector<BlockQ4_1> b(nb);
    std::vector<float> want;
    for (auto& blk : b) {
      blk.d = random_scale(rng, false);
      blk.m = f32_to_f16(-8.0f * f16_to_f32(blk.d));  // so that d*q + m is exact
      int q[32];
      for (int& c : q) c = code(rng, 16);
      for (int j = 0; j < 16; ++j) blk.qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
      for (int j = 0; j < 32; ++j) want.push_back(float(q[j] - 8) * f16_to_f32(blk.d));
    }
    check(GgmlType::Q4_1, b, dequantize_row_q4_1_ref, want);
  }
  {
    std::vector<BlockQ5_0> b(nb);
    std::vector<float> want;
    for (auto& blk : b) {
      blk.d = random_scale(rng);
      int q[32];
      uint32_t qh = 0;
      for (int& c : q) c = code(rng, 32);
      for (int j = 0; j < 32; ++j) qh |= uint32_t(q[j] >> 4) << j;
      std::memcpy(blk.qh, &qh, 4);
      for (int j = 0; j < 16; ++j) blk.qs[j] = uint8_t((q[j] & 15) | ((q[j + 16] & 15) << 4));
      for (int j = 0; j < 32; ++j) want.push_back(float(q[j] - 16) * f16_to_f32(blk.d));
    }
    check(GgmlType::Q5_0, b, dequantize_row_q5_0_ref, want);
  }
  {
    std::vector<BlockQ5_1> b(nb);
    std::vector<float> want;
    for (auto& blk : b) {
      blk.d = random_scale(rng, false);
      blk.m = f32_to_f16(-16.0f * f16_to_f32(blk.d));
      int q[32];
      uint32_t qh = 0;
      for (int& c : q) c = code(rng, 32);
      for (int j = 0; j < 32; ++j) qh |= uint32_t(q[j] >> 4) << j;
      std::memcpy(blk.qh, &qh, 4);
      for (int j = 0; j < 16; ++j) blk.qs[j] = uint8_t((q[j] & 15) | ((q[j + 16] & 15) << 4));
      for (int j = 0; j < 32; ++j) want.push_back(float(q[j] - 16) * f16_to_f32(blk.d));
    }
    check(GgmlType::Q5_1, b, dequantize_row_q5_1_ref, want);
  }
  {
    std::vector<BlockQ8_0> b(nb);
    std::vector<float> want;
    for (auto& blk : b) {
      blk.d = random_scale(rng);
      for (int j = 0; j < 32; ++j) {
        blk.qs[j] = int8_t(code(rng, 256) - 128);
        want.push_back(float(blk.qs[j]) * f16_to_f32(blk.d));
      }
    }
    check(GgmlType::Q8_0, b, dequantize_row_q8_0_ref, want);
  }
}

// Element e of a 256-block in the 2-bit plane layout of Q2_K / Q3_K: byte (e/128)*32 + e%32,
// shift 2 * ((e%128) / 32).
void put_2bit(uint8_t* qs, int e, int v) {
  qs[(e / 128) * 32 + e % 32] |= uint8_t(v << (2 * ((e % 128) / 32)));
}

TEST(GgmlBlocks, Q2KAndQ3K) {
  std::mt19937_64 rng(2);
  {
    std::vector<BlockQ2_K> b(3);
    std::vector<float> want;
    for (auto& blk : b) {
      std::memset(&blk, 0, sizeof blk);
      blk.d = random_scale(rng, false);
      blk.dmin = random_scale(rng, false);
      int sc[16], m[16];
      for (int s = 0; s < 16; ++s) {
        sc[s] = code(rng, 16);
        m[s] = code(rng, 16);
        blk.scales[s] = uint8_t(sc[s] | (m[s] << 4));
      }
      for (int e = 0; e < 256; ++e) {
        const int q = code(rng, 4);
        put_2bit(blk.qs, e, q);
        const int s = e / 16;
        want.push_back(f16_to_f32(blk.d) * float(sc[s]) * float(q) - f16_to_f32(blk.dmin) * float(m[s]));
      }
    }
    check(GgmlType::Q2_K, b, dequantize_row_q2_K_ref, want);
  }
  {
    std::vector<BlockQ3_K> b(3);
    std::vector<float> want;
    for (auto& blk : b) {
      std::memset(&blk, 0, sizeof blk);
      blk.d = random_scale(rng);
      int sc[16];
      for (int i = 0; i < 16; ++i) {
        sc[i] = code(rng, 64);
        const int low = sc[i] & 15, high = sc[i] >> 4;
        if (i < 8) blk.scales[i] |= uint8_t(low);
        else blk.scales[i - 8] |= uint8_t(low << 4);
        blk.scales[8 + i % 4] |= uint8_t(high << (2 * (i / 4)));
      }
      for (int e = 0; e < 256; ++e) {
        const int v = code(rng, 8) - 4;  // [-4, 3]: high bit set for v >= 0
        const int hbit = v >= 0, low = v + 4 * (1 - hbit);
        put_2bit(blk.qs, e, low);
        if (hbit) blk.hmask[e % 32] |= uint8_t(1 << (e / 32));
        want.push_back(f16_to_f32(blk.d) * float(sc[e / 16] - 32) * float(v));
      }
    }
    check(GgmlType::Q3_K, b, dequantize_row_q3_K_ref, want);
  }
}

// The 12-byte packing of eight 6-bit scales and mins (Q4_K, Q5_K).
void put_scale_min(uint8_t* s, int j, int sc, int m) {
  if (j < 4) {
    s[j] |= uint8_t(sc & 63);
    s[j + 4] |= uint8_t(m & 63);
  } else {
    s[j + 4] |= uint8_t((sc & 15) | ((m & 15) << 4));
    s[j - 4] |= uint8_t((sc >> 4) << 6);
    s[j] |= uint8_t((m >> 4) << 6);
  }
}

TEST(GgmlBlocks, Q4KQ5KAndQ6K) {
  std::mt19937_64 rng(3);
  {
    std::vector<BlockQ4_K> b(3);
    std::vector<float> want;
    for (auto& blk : b) {
      std::memset(&blk, 0, sizeof blk);
      blk.d = random_scale(rng, false);
      blk.dmin = random_scale(rng, false);
      int sc[8], m[8];
      for (int j = 0; j < 8; ++j) {
        sc[j] = code(rng, 64);
        m[j] = code(rng, 64);
        put_scale_min(blk.scales, j, sc[j], m[j]);
        uint8_t got_sc, got_m;
        k_quant_scale_min(j, blk.scales, &got_sc, &got_m);
        ASSERT_EQ(got_sc, sc[j]);
        ASSERT_EQ(got_m, m[j]);
      }
      for (int e = 0; e < 256; ++e) {
        const int q = code(rng, 16), sub = e / 32, l = e % 32;
        blk.qs[(sub / 2) * 32 + l] |= uint8_t(sub % 2 ? q << 4 : q);
        want.push_back(f16_to_f32(blk.d) * float(sc[sub]) * float(q) - f16_to_f32(blk.dmin) * float(m[sub]));
      }
    }
    check(GgmlType::Q4_K, b, dequantize_row_q4_K_ref, want);
  }
  {
    std::vector<BlockQ5_K> b(3);
    std::vector<float> want;
    for (auto& blk : b) {
      std::memset(&blk, 0, sizeof blk);
      blk.d = random_scale(rng, false);
      blk.dmin = random_scale(rng, false);
      int sc[8], m[8];
      for (int j = 0; j < 8; ++j) {
        sc[j] = code(rng, 64);
        m[j] = code(rng, 64);
        put_scale_min(blk.scales, j, sc[j], m[j]);
      }
      for (int e = 0; e < 256; ++e) {
        const int q = code(rng, 32), sub = e / 32, l = e % 32;
        blk.qs[(sub / 2) * 32 + l] |= uint8_t(sub % 2 ? (q & 15) << 4 : (q & 15));
        blk.qh[l] |= uint8_t((q >> 4) << sub);
        want.push_back(f16_to_f32(blk.d) * float(sc[sub]) * float(q) - f16_to_f32(blk.dmin) * float(m[sub]));
      }
    }
    check(GgmlType::Q5_K, b, dequantize_row_q5_K_ref, want);
  }
  {
    std::vector<BlockQ6_K> b(3);
    std::vector<float> want;
    for (auto& blk : b) {
      std::memset(&blk, 0, sizeof blk);
      blk.d = random_scale(rng);
      for (auto& s : blk.scales) s = int8_t(code(rng, 256) - 128);
      for (int e = 0; e < 256; ++e) {
        const int q = code(rng, 64), half = e / 128, w = e % 128, quarter = w / 32, l = w % 32;
        uint8_t* ql = blk.ql + half * 64;
        uint8_t* qh = blk.qh + half * 32;
        const int lo = q & 15, hi = q >> 4;
        ql[l + (quarter % 2) * 32] |= uint8_t(quarter < 2 ? lo : lo << 4);
        qh[l] |= uint8_t(hi << (2 * quarter));
        want.push_back(f16_to_f32(blk.d) * float(blk.scales[half * 8 + w / 16]) * float(q - 32));
      }
    }
    check(GgmlType::Q6_K, b, dequantize_row_q6_K_ref, want);
  }
}

// The K-quant packers (the GGUF writer's) invert the dequantizers: random codes, sub-block codes
// and fp16 scales packed by pack_q*_K decode to the formula each packer documents, exactly.
TEST(GgmlBlocks, KQuantPackersInvertTheDequantizers) {
  std::mt19937_64 rng(9);
  for (int trial = 0; trial < 4; ++trial) {
    uint8_t q[256], sc[16], m[16];
    int8_t sc6[16];
    const uint16_t d = random_scale(rng), d_pos = random_scale(rng, false), dmin = random_scale(rng, false);
    const float fd = f16_to_f32(d), fdp = f16_to_f32(d_pos), fdmin = f16_to_f32(dmin);
    float got[256];
    auto expect = [&](const char* type, auto value) {
      for (int e = 0; e < 256; ++e) ASSERT_EQ(got[e], value(e)) << type << " element " << e;
    };
    for (int e = 0; e < 256; ++e) q[e] = uint8_t(code(rng, 4));
    for (int i = 0; i < 16; ++i) sc[i] = uint8_t(code(rng, 16)), m[i] = uint8_t(code(rng, 16));
    BlockQ2_K b2 = pack_q2_K(q, sc, m, d_pos, dmin);
    dequantize_row_q2_K_ref(&b2, got, 256);
    expect("Q2_K", [&](int e) { return fdp * float(sc[e / 16]) * float(q[e]) - fdmin * float(m[e / 16]); });

    for (int e = 0; e < 256; ++e) q[e] = uint8_t(code(rng, 8));
    for (int i = 0; i < 16; ++i) sc[i] = uint8_t(code(rng, 64));
    BlockQ3_K b3 = pack_q3_K(q, sc, d);
    dequantize_row_q3_K_ref(&b3, got, 256);
    expect("Q3_K", [&](int e) { return fd * float(int(sc[e / 16]) - 32) * float(int(q[e]) - 4); });

    for (int e = 0; e < 256; ++e) q[e] = uint8_t(code(rng, 16));
    for (int j = 0; j < 8; ++j) sc[j] = uint8_t(code(rng, 64)), m[j] = uint8_t(code(rng, 64));
    BlockQ4_K b4 = pack_q4_K(q, sc, m, d_pos, dmin);
    dequantize_row_q4_K_ref(&b4, got, 256);
    expect("Q4_K", [&](int e) { return fdp * float(sc[e / 32]) * float(q[e]) - fdmin * float(m[e / 32]); });

    for (int e = 0; e < 256; ++e) q[e] = uint8_t(code(rng, 32));
    BlockQ5_K b5 = pack_q5_K(q, sc, m, d_pos, dmin);
    dequantize_row_q5_K_ref(&b5, got, 256);
    expect("Q5_K", [&](int e) { return fdp * float(sc[e / 32]) * float(q[e]) - fdmin * float(m[e / 32]); });

    for (int e = 0; e < 256; ++e) q[e] = uint8_t(code(rng, 64));
    for (int i = 0; i < 16; ++i) sc6[i] = int8_t(code(rng, 256) - 128);
    BlockQ6_K b6 = pack_q6_K(q, sc6, d);
    dequantize_row_q6_K_ref(&b6, got, 256);
    expect("Q6_K", [&](int e) { return fd * float(sc6[e / 16]) * float(int(q[e]) - 32); });
  }
}

TEST(GgmlBlocks, FloatTypes) {
  std::vector<uint16_t> halves(65536);
  for (uint32_t i = 0; i < 65536; ++i) halves[i] = uint16_t(i);
  std::vector<float> want(65536), want_bf(65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    want[i] = f16_to_f32(uint16_t(i));
    const uint32_t bits = i << 16;
    std::memcpy(&want_bf[i], &bits, 4);
  }
  std::vector<float> got(65536);
  ggml_traits(GgmlType::F16).dequantize(reinterpret_cast<const uint8_t*>(halves.data()), got.data(), 65536);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), 65536 * 4), 0);
  ggml_traits(GgmlType::BF16).dequantize(reinterpret_cast<const uint8_t*>(halves.data()), got.data(), 65536);
  EXPECT_EQ(std::memcmp(got.data(), want_bf.data(), 65536 * 4), 0);
  ggml_traits(GgmlType::F32).dequantize(reinterpret_cast<const uint8_t*>(want.data()), got.data(), 65536);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), 65536 * 4), 0);
}

}  // namespace
}  // namespace ptq
