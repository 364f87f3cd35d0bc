// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
// Packed checkpoint layouts (gptq, gptq_v2, awq, compressed-tensors): bit-exact pack/unpack, hand-built words,
// an independent dequantizer reading the files from the documented layout alone, validation
// errors, and the size of a 4096-wide layer against fp16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "support/synthetic.h"
#include "formats/checkpoint_writer.h"
#include "formats/packed_checkpoint.h"
#include "formats/safetensors.h"
#include "ptq/error.h"
#include "formats/loaded_model.h"
#include "ptq/pipeline.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

// A random GridCodes: every code and zero value in [g.min_zero, max_q] occurs (zero 0 included
// unless the grid excludes it: the case v1's zero−1 convention wraps), scales are fp16-exact
// unless `raw_scales`.
GridCodes random_weight(int rows, int cols, QuantGrid g, bool act_order, uint64_t seed,
                              bool raw_scales = false) {
  std::mt19937_64 rng(seed);
  GridCodes q;
  q.rows = rows;
  q.cols = cols;
  q.grid = g;
  const int groups = g.num_groups(cols);
  q.q.resize(size_t(rows) * cols);
  for (auto& c : q.q) c = uint8_t(rng() % uint64_t(g.max_q() + 1));
  q.scales.resize(rows, groups);
  q.zeros.resize(rows, groups);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < groups; ++j) {
      float s = 1e-3f + float(rng() % 100000) * 1e-6f;
      q.scales(r, j) = raw_scales ? s : f16_to_f32(f32_to_f16(s));
      q.zeros(r, j) = g.sym ? float(1 << (g.bits - 1))
                            : float(g.min_zero + int(rng() % uint64_t(g.max_q() + 1 - g.min_zero)));
    }
  std::vector<int> order(cols);
  std::iota(order.begin(), order.end(), 0);
  if (act_order) std::shuffle(order.begin(), order.end(), rng);  // order[i]: i-th quantized column
  q.g_idx.resize(cols);
  for (int i = 0; i < cols; ++i) q.g_idx[order[i]] = g.group_size <= 0 ? 0 : i / g.group_size;
  return q;
}

void expect_same(const GridCodes& a, const GridCodes& b) {
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.g_idx, b.g_idx);
  ASSERT_EQ(a.zeros.cols(), b.zeros.cols());
  EXPECT_TRUE(a.zeros == b.zeros);
  for (Eigen::Index i = 0; i < a.scales.size(); ++i)
    ASSERT_EQ(f16_to_f32(f32_to_f16(a.scales.data()[i])), b.scales.data()[i]) << "scale " << i;
}

struct Case {
  int bits, group, rows, cols;
  bool act_order;
};

TEST(PackedGptq, RoundTripIsBitExactForEveryBitWidthGroupAndShape) {
  std::vector<Case> cases;
  for (int bits : {2, 3, 4, 8})
    for (int group : {32, 128, -1})
      for (auto [rows, cols] : {std::pair{64, 172}, std::pair{172, 64}, std::pair{48, 256}, std::pair{7, 33}})
        for (bool act : {false, true}) cases.push_back({bits, group, rows, cols, act});
  uint64_t seed = 1;
  for (const auto& c : cases) {
    char trace[64];  // snprintf, not string concatenation: GCC 12 emits a false -Wrestrict on that
    std::snprintf(trace, sizeof trace, "w%d g%d [%d, %d]%s", c.bits, c.group, c.rows, c.cols,
                  c.act_order ? " act_order" : "");
    SCOPED_TRACE(trace);
    QuantGrid g{c.bits, c.group, false};
    GridCodes q = random_weight(c.rows, c.cols, g, c.act_order, seed++);
    for (const PackedLayout* layout : {&gptq_layout(), &gptq_v2_layout()}) {
      PackedLayer packed = layout->pack(q);
      expect_same(q, layout->unpack("test", packed, c.rows, c.cols, g));
    }
  }
}

TEST(PackedGptq, ScalesRoundToFp16AndSymmetricZerosSurvive) {
  QuantGrid g{4, 32, true};
  GridCodes q = random_weight(40, 96, g, false, 7, /*raw_scales=*/true);
  GridCodes back = gptq_layout().unpack("test", gptq_layout().pack(q), 40, 96, g);
  expect_same(q, back);
  EXPECT_TRUE((back.zeros.array() == 8.0f).all());
  EXPECT_LE(((back.scales - q.scales).cwiseAbs().array() / q.scales.array()).maxCoeff(), 1.0f / 2048);
}

std::vector<uint32_t> words(const PackedBuffer& b) {
  std::vector<uint32_t> w(b.bytes.size() / 4);
  std::memcpy(w.data(), b.bytes.data(), b.bytes.size());
  return w;
}

TEST(PackedGptq, ThreeBitValuesStraddleWordsAsAutoGptqPacksThem) {
  // 32 three-bit values fill 3 words; value 10 covers bits 30..32 and value 21 bits 63..65.
  QuantGrid g{3, -1, false};
  GridCodes q = random_weight(1, 32, g, false, 3);
  std::fill(q.q.begin(), q.q.end(), 0);
  q.q[10] = 0b111;
  q.q[21] = 0b101;
  q.q[31] = 0b110;
  q.zeros(0, 0) = 0;  // stored as (0 − 1) mod 8 = 7 in the first 3 bits of qzeros
  PackedLayer p = gptq_layout().pack(q);
  EXPECT_EQ(p["qweight"].shape, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(words(p["qweight"]), (std::vector<uint32_t>{0xC0000000u, 0x80000001u, 0xC0000002u}));
  EXPECT_EQ(p["qzeros"].shape, (std::vector<int64_t>{1, 3}));  // N = 1 padded to 32 values
  EXPECT_EQ(words(p["qzeros"]), (std::vector<uint32_t>{7u, 0u, 0u}));
  EXPECT_EQ(p["g_idx"].shape, (std::vector<int64_t>{32}));
}

TEST(PackedGptq, FourBitNibblesAreLeastSignificantFirstAlongK) {
  QuantGrid g{4, -1, false};
  GridCodes q = random_weight(2, 8, g, false, 4);
  for (int c = 0; c < 8; ++c) {
    q.q[c] = uint8_t(c + 1);       // row 0
    q.q[8 + c] = uint8_t(15 - c);  // row 1
  }
  q.zeros(0, 0) = 1;
  q.zeros(1, 0) = 9;
  PackedLayer p = gptq_layout().pack(q);
  EXPECT_EQ(words(p["qweight"]), (std::vector<uint32_t>{0x87654321u, 0x89ABCDEFu}));
  EXPECT_EQ(words(p["qzeros"]), (std::vector<uint32_t>{0x00000080u}));  // zero−1: 0 and 8
}

TEST(PackedAwq, NibbleOrderMatchesTheHandBuiltWord) {
  // Outputs 0..7 with codes 1..8 at one input; AWQ nibble i holds output [0,2,4,6,1,3,5,7][i].
  QuantGrid g{4, 32, false};
  GridCodes q = random_weight(8, 1, g, false, 5);
  for (int r = 0; r < 8; ++r) {
    q.q[r] = uint8_t(r + 1);
    q.zeros(r, 0) = float(8 - r);
  }
  PackedLayer p = awq_layout().pack(q);
  EXPECT_EQ(p["qweight"].shape, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(words(p["qweight"]), (std::vector<uint32_t>{0x86427531u}));
  EXPECT_EQ(words(p["qzeros"]), (std::vector<uint32_t>{0x13572468u}));  // zeros 8..1, no −1
  EXPECT_EQ(p.count("g_idx"), 0u);
  expect_same(q, awq_layout().unpack("test", p, 8, 1, g));
}

TEST(PackedAwq, RoundTripWithPaddedOutputs) {
  for (int group : {32, 128, -1})
    for (auto [rows, cols] : {std::pair{172, 64}, std::pair{64, 172}, std::pair{13, 40}}) {
      QuantGrid g{4, group, false};
      GridCodes q = random_weight(rows, cols, g, false, uint64_t(rows * 1000 + cols + group));
      PackedLayer p = awq_layout().pack(q);
      EXPECT_EQ(p["qweight"].shape, (std::vector<int64_t>{cols, (rows + 7) / 8}));
      expect_same(q, awq_layout().unpack("test", p, rows, cols, g));
    }
}

TEST(PackedValidate, AwqRejectsThreeBitsAndActOrderNamingTheLayer) {
  const FormatTraits& awq_format = format_traits("awq");
  EXPECT_NE(awq_format.grid_refusal(172, 64, QuantGrid{3, 32, false}).find("4-bit"), std::string::npos);
  auto awq = make_checkpoint_writer("awq");
  const std::string layer = "model.layers.0.mlp.up_proj";
  QuantizedLayer q = QuantizedLayer::from_grid(random_weight(172, 64, QuantGrid{4, 32, false}, /*act_order=*/true, 9));
  LayerResult r;
  r.name = layer;
  auto expect_refused = [&](const QuantizedLayer& l, const std::string& why) {
    try {
      awq->add_layer(r, &l);
      ADD_FAILURE() << "awq accepted a layer it cannot store: " << why;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(layer), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  expect_refused(q, "g_idx");
  // Fractional zero points (never an assert on the packer) and parts beyond the dense grid.
  QuantizedLayer frac = QuantizedLayer::from_grid(random_weight(172, 64, QuantGrid{4, 32, false}, false, 10));
  frac.grid.zeros(0, 0) = 2.5f;
  expect_refused(frac, "fractional zeros");
  QuantizedLayer sparse = QuantizedLayer::from_grid(random_weight(172, 64, QuantGrid{4, 32, false}, false, 11));
  sparse.sparse = SparseResidual::from_dense(Mat::Identity(172, 64));
  expect_refused(sparse, "only a dense grid");
  EXPECT_FALSE(format_traits("gptq").grid_refusal(172, 64, QuantGrid{5, 32, false}).empty());
  EXPECT_TRUE(format_traits("gptq").grid_refusal(172, 64, QuantGrid{3, 32, false}).empty());
  EXPECT_TRUE(format_traits("ptq").layer_refusal(sparse).empty());
}

TEST(PackedSize, FourBitG128LayerIsAtMostPoint27OfFp16) {
  // Synthetic: the q_proj and down_proj shapes of a 4096-wide model (ffn 11008).
  size_t packed_bytes = 0, fp16_bytes = 0;
  for (auto [rows, cols] : {std::pair{4096, 4096}, std::pair{4096, 11008}}) {
    GridCodes q = random_weight(rows, cols, QuantGrid{4, 128, false}, false, 11);
    for (const auto& [suffix, b] : gptq_layout().pack(q)) packed_bytes += b.bytes.size();
    fp16_bytes += size_t(rows) * cols * 2;
  }
  const double ratio = double(packed_bytes) / double(fp16_bytes);
  RecordProperty("packed_over_fp16", std::to_string(ratio));
  std::printf("synthetic 4096-wide, gptq w4 g128: %zu packed bytes / %zu fp16 bytes = %.4f\n", packed_bytes,
              fp16_bytes, ratio);
  EXPECT_LE(ratio, 0.27);
  EXPECT_GT(ratio, 0.25);  // 4 bits of codes alone are a quarter
}

// ---- Whole checkpoints through the writers, read back by an independent dequantizer ----

uint32_t word_at(const SafetensorsFile& f, const std::string& name, int64_t row, int64_t col) {
  const TensorInfo& t = f.tensors().at(name);
  uint32_t w;
  std::memcpy(&w, f.data(name) + 4 * (row * t.shape[1] + col), 4);
  return w;
}
float f16_at(const SafetensorsFile& f, const std::string& name, int64_t i) {
  uint16_t h;
  std::memcpy(&h, f.data(name) + 2 * i, 2);
  return f16_to_f32(h);
}

// Dequantizes <m> from the GPTQ description as clients outside ptq decode it: code k of column
// n is bits [k·b, k·b+b) of the column's words read as one little-endian bit string; zero =
// stored + 1 for v1 (no wrap: AutoGPTQ, GPTQModel and transformers add 1 to the unpacked value),
// stored for v2.
Mat gptq_dequantize_independently(const SafetensorsFile& f, const std::string& m, int rows, int cols, int b,
                                  bool v2) {
  const int64_t qw_rows = f.tensors().at(m + ".qweight").shape[0];
  const auto& zshape = f.tensors().at(m + ".qzeros").shape;
  std::vector<std::vector<bool>> zero_bits(zshape[0]);  // row g of qzeros as one bit string
  for (int64_t g = 0; g < zshape[0]; ++g)
    for (int64_t c = 0; c < zshape[1]; ++c)
      for (int i = 0; i < 32; ++i) zero_bits[g].push_back((word_at(f, m + ".qzeros", g, c) >> i) & 1);
  Mat w(rows, cols);
  for (int n = 0; n < rows; ++n) {
    std::vector<bool> bits;
    for (int64_t r = 0; r < qw_rows; ++r)
      for (int i = 0; i < 32; ++i) bits.push_back((word_at(f, m + ".qweight", r, n) >> i) & 1);
    for (int k = 0; k < cols; ++k) {
      int code = 0;
      for (int i = 0; i < b; ++i) code |= int(bits[size_t(k) * b + i]) << i;
      int32_t g;
      std::memcpy(&g, f.data(m + ".g_idx") + 4 * k, 4);
      const std::vector<bool>& zbits = zero_bits.at(g);
      int stored = 0;
      for (int i = 0; i < b; ++i) stored |= int(zbits[size_t(n) * b + i]) << i;
      const int zero = v2 ? stored : stored + 1;
      w(n, k) = f16_at(f, m + ".scales", int64_t(g) * rows + n) * float(code - zero);
    }
  }
  return w;
}

// Dequantizes <m> from the AWQ GEMM description: output n of input k is nibble
// [0,4,1,5,2,6,3,7][n % 8] of qweight[k, n / 8]; zeros likewise, no offset; group = k / g.
Mat awq_dequantize_independently(const SafetensorsFile& f, const std::string& m, int rows, int cols, int group) {
  const int where[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  Mat w(rows, cols);
  for (int k = 0; k < cols; ++k)
    for (int n = 0; n < rows; ++n) {
      const int g = group <= 0 ? 0 : k / group;
      const int code = int(word_at(f, m + ".qweight", k, n / 8) >> (4 * where[n % 8])) & 15;
      const int zero = int(word_at(f, m + ".qzeros", g, n / 8) >> (4 * where[n % 8])) & 15;
      w(n, k) = f16_at(f, m + ".scales", int64_t(g) * rows + n) * float(code - zero);
    }
  return w;
}

// A small synthetic model (hidden 64, ffn 172: neither fills whole 3-bit words) written through
// `format` with random quantized layers; returns them by module name.
std::map<std::string, GridCodes> write_packed(const std::string& format, QuantGrid g, bool act_order,
                                                    const std::string& src, const std::string& out) {
  synthetic::LlamaShape shape;
  shape.hidden = 64;
  shape.ffn = 172;
  shape.layers = 1;
  shape.heads = 4;
  shape.kv_heads = 2;
  shape.vocab = 96;
  synthetic::write_llama(src, shape);
  Model model = Model::open(src);
  auto writer = make_checkpoint_writer(format);
  std::map<std::string, GridCodes> layers;
  const FormatTraits& traits = format_traits(format);
  traits.constraints.apply(g);  // as the quantizers do
  CheckpointMetadata meta;
  meta.recipe = "rtn(w" + std::to_string(g.bits) + ")";
  uint64_t seed = 100;
  for (const auto& name : linear_layer_names(model.config())) {
    const TensorInfo* info = model.tensors().find(name + ".weight");
    LayerResult r;
    r.name = name;
    r.rows = int(info->shape[0]);
    r.cols = int(info->shape[1]);
    EXPECT_EQ(traits.grid_refusal(r.rows, r.cols, g), "");
    layers[name] = random_weight(r.rows, r.cols, g, act_order, seed++);
    const QuantizedLayer layer = QuantizedLayer::from_grid(layers[name]);
    writer->add_layer(r, &layer);
    meta.layers.push_back(r);
  }
  OutputDir dir(out);
  writer->finish(model, meta, dir);
  dir.commit();
  return layers;
}

// v1 files hold no zero point of 0 (the format's min_zero reaches the grid), so clients that add
// 1 without wrapping read what ptq reads; v2 files hold zeros of 0 exactly.
TEST(PackedCheckpoint, GptqFilesDequantizeIndependentlyAndReadBackBitExact) {
  const std::string tmp = test::temp_dir("packed_gptq_ckpt");
  for (const std::string format : {"gptq", "gptq_v2"})
    for (int bits : {3, 4}) {
      SCOPED_TRACE(format + " w" + std::to_string(bits));
      const bool v2 = format == "gptq_v2";
      QuantGrid g{bits, 32, false};
      const std::string out = tmp + "/" + format + "-w" + std::to_string(bits);
      auto layers = write_packed(format, g, /*act_order=*/true, tmp + "/src", out);
      SafetensorsFile f(out + "/model.safetensors");
      auto shapes = nlohmann::json::parse(f.metadata().at("ptq.shapes"));
      EXPECT_EQ(f.metadata().at("ptq.format"), format);
      EXPECT_TRUE(f.metadata().count("ptq.recipe"));
      EXPECT_EQ(detect_format(out)->name, format);
      auto back = read_packed_checkpoint(out);
      ASSERT_EQ(back.size(), layers.size());
      int zeros_at_0 = 0;
      for (const auto& [name, q] : layers) {
        SCOPED_TRACE(name);
        EXPECT_EQ(shapes[name], nlohmann::json({q.rows, q.cols}));
        EXPECT_FALSE(f.tensors().count(name + ".weight"));
        expect_same(q, back.at(name).grid);
        Mat mine = gptq_dequantize_independently(f, name, q.rows, q.cols, bits, v2);
        EXPECT_TRUE(mine == back.at(name).grid.dequantize());
        EXPECT_LE((mine - q.dequantize()).cwiseAbs().maxCoeff(), 1e-6f);  // scales were fp16-exact
        zeros_at_0 += int((q.zeros.array() == 0.0f).count());
      }
      if (v2) EXPECT_GT(zeros_at_0, 0);
      else EXPECT_EQ(zeros_at_0, 0);
      auto cfg = nlohmann::json::parse(std::ifstream(out + "/config.json"));
      const auto& qc = cfg["quantization_config"];
      EXPECT_EQ(qc["quant_method"], "gptq");
      EXPECT_EQ(qc["checkpoint_format"], format);
      EXPECT_EQ(qc["bits"], bits);
      EXPECT_EQ(qc["group_size"], 32);
      EXPECT_EQ(qc["desc_act"], true);
      EXPECT_EQ(qc["sym"], false);
      EXPECT_EQ(cfg["hidden_size"], 64);
    }
}

// A grid made elsewhere (not under the format's constraints) with a zero point of 0 is refused
// by v1, naming the layer and v2, and stored exactly by v2.
TEST(PackedValidate, GptqV1RefusesZeroPointZeroAndNamesV2) {
  QuantGrid g{4, 32, false};
  g.min_zero = 1;  // no zero of 0 but the one set below
  GridCodes q = random_weight(16, 64, g, false, 3);
  q.zeros(5, 1) = 0.0f;
  const QuantizedLayer layer = QuantizedLayer::from_grid(q);
  const std::string why = format_traits("gptq").layer_refusal(layer);
  EXPECT_NE(why.find("1 zero points are 0"), std::string::npos) << why;
  EXPECT_NE(why.find("gptq_v2"), std::string::npos) << why;
  EXPECT_EQ(format_traits("gptq_v2").layer_refusal(layer), "");
  auto writer = make_checkpoint_writer("gptq");
  LayerResult r;
  r.name = "model.layers.0.mlp.up_proj";
  r.rows = 16;
  r.cols = 64;
  try {
    writer->add_layer(r, &layer);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj"), std::string::npos) << e.what();
  }
}

// A GPTQ checkpoint_format ptq does not read is an error naming the file, not an fp model.
TEST(PackedValidate, UnknownGptqCheckpointFormatIsNamed) {
  const std::string dir = test::temp_dir("gptq_unknown_format");
  std::ofstream(dir + "/config.json") << R"({"quantization_config": {"quant_method": "gptq", "checkpoint_format": "marlin"}})";
  try {
    detect_format(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'marlin'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST(PackedCheckpoint, AwqFilesDequantizeIndependently) {
  const std::string tmp = test::temp_dir("packed_awq_ckpt");
  QuantGrid g{4, 32, false};
  auto layers = write_packed("awq", g, false, tmp + "/src", tmp + "/out");
  SafetensorsFile f(tmp + "/out/model.safetensors");
  auto back = read_packed_checkpoint(tmp + "/out");
  for (const auto& [name, q] : layers) {
    SCOPED_TRACE(name);
    expect_same(q, back.at(name).grid);
    EXPECT_TRUE(awq_dequantize_independently(f, name, q.rows, q.cols, 32) == back.at(name).grid.dequantize());
  }
  auto cfg = nlohmann::json::parse(std::ifstream(tmp + "/out/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "awq");
  EXPECT_EQ(cfg["quantization_config"]["version"], "gemm");
  EXPECT_EQ(cfg["quantization_config"]["zero_point"], true);
}

// Dequantizes <m> from the compressed-tensors pack-quantized description: value k of row n is
// bits [k·b, k·b+b) of the row's weight_packed words as one little-endian bit string; zero point
// n of group g likewise down column g of weight_zero_point (2^(b−1) when symmetric); g = k / group.
Mat compressed_tensors_dequantize_independently(const SafetensorsFile& f, const std::string& m, int rows, int cols,
                                                int b, int group, bool sym) {
  auto stream_value = [&](const std::string& name, bool down_columns, int64_t line, int64_t index) {
    const auto& shape = f.tensors().at(name).shape;
    int v = 0;
    for (int i = 0; i < b; ++i) {
      const int64_t bit = index * b + i;
      const uint32_t word = down_columns ? word_at(f, name, bit / 32, line) : word_at(f, name, line, bit / 32);
      EXPECT_LT(bit / 32, down_columns ? shape[0] : shape[1]);
      v |= int((word >> (bit % 32)) & 1) << i;
    }
    return v;
  };
  const int groups = group <= 0 ? 1 : cols / group;
  Mat w(rows, cols);
  for (int n = 0; n < rows; ++n)
    for (int k = 0; k < cols; ++k) {
      const int g = group <= 0 ? 0 : k / group;
      const int code = stream_value(m + ".weight_packed", false, n, k);
      const int zero = sym ? 1 << (b - 1) : stream_value(m + ".weight_zero_point", true, g, n);
      w(n, k) = f16_at(f, m + ".weight_scale", int64_t(n) * groups + g) * float(code - zero);
    }
  return w;
}

TEST(PackedCompressedTensors, RoundTripIsBitExactForEveryBitWidth) {
  uint64_t seed = 11;
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true})
      for (int group : {32, -1})
        for (auto [rows, cols] : {std::pair{64, 96}, std::pair{7, 256}}) {
          SCOPED_TRACE("w" + std::to_string(bits) + (sym ? " sym" : " asym") + " g" + std::to_string(group) + " [" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "]");
          QuantGrid g{bits, group, sym};
          GridCodes q = random_weight(rows, cols, g, false, seed++);
          const PackedLayout& layout = compressed_tensors_layout();
          EXPECT_EQ(layout.grid_refusal(rows, cols, g), "");
          const PackedLayer packed = layout.pack(q);
          EXPECT_EQ(packed.at("weight_packed").shape, (std::vector<int64_t>{rows, (int64_t(cols) * bits + 31) / 32}));
          EXPECT_EQ(packed.count("weight_zero_point"), sym ? 0u : 1u);
          expect_same(q, layout.unpack("test", packed, rows, cols, g));
        }
}

// Three 3-bit words hold 32 values; value 10 straddles words 0 and 1 (bits 30..32).
TEST(PackedCompressedTensors, ThreeBitValuesAreOneDenseStreamPerRow) {
  QuantGrid g{3, -1, true};
  GridCodes q = random_weight(1, 32, g, false, 1);
  for (int c = 0; c < 32; ++c) q.q[c] = uint8_t(c % 8);
  const PackedLayer packed = compressed_tensors_layout().pack(q);
  const std::vector<uint32_t> w = words(packed.at("weight_packed"));
  ASSERT_EQ(w.size(), 3u);
  uint32_t expect0 = 0;
  for (int c = 0; c < 10; ++c) expect0 |= uint32_t(c % 8) << (3 * c);
  expect0 |= uint32_t(10 % 8 & 3) << 30;
  EXPECT_EQ(w[0], expect0);
  EXPECT_EQ(w[1] & 1u, uint32_t((10 % 8) >> 2));
}

// GPTQModel and llm-compressor store the scales of bf16 models as BF16: every layout reads them
// (and any other dtype is an error naming the tensor).
TEST(PackedValidate, Bf16ScalesAreReadByEveryLayout) {
  QuantGrid g{4, 32, false};
  g.min_zero = 1;
  GridCodes q = random_weight(16, 64, g, false, 9, /*raw_scales=*/true);
  for (Eigen::Index i = 0; i < q.scales.size(); ++i) q.scales.data()[i] = bf16_to_f32(f32_to_bf16(q.scales.data()[i]));
  for (const PackedLayout* layout : {&gptq_layout(), &gptq_v2_layout(), &awq_layout(), &compressed_tensors_layout()}) {
    SCOPED_TRACE(layout->name());
    PackedLayer packed = layout->pack(q);
    const std::string suffix = layout->name() == "compressed-tensors" ? "weight_scale" : "scales";
    PackedBuffer& b = packed.at(suffix);
    const bool rows_first = layout->name() == "compressed-tensors";  // [N, G], else [G, N]
    for (int r = 0; r < q.rows; ++r)
      for (int j = 0; j < int(q.scales.cols()); ++j) {
        const uint16_t h = f32_to_bf16(q.scales(r, j));
        const size_t at = rows_first ? size_t(r) * q.scales.cols() + j : size_t(j) * q.rows + r;
        std::memcpy(&b.bytes[2 * at], &h, 2);
      }
    b.dtype = DType::BF16;
    const GridCodes back = layout->unpack("test", packed, q.rows, q.cols, g);
    EXPECT_TRUE(back.scales == q.scales);
    EXPECT_EQ(back.q, q.q);
    b.dtype = DType::F32;
    EXPECT_THROW(layout->unpack("test", packed, q.rows, q.cols, g), Error);
  }
}

TEST(PackedCompressedTensors, RefusesActOrderAndGroupsThatDoNotDivide) {
  const FormatTraits& f = format_traits("compressed-tensors");
  EXPECT_NE(f.grid_refusal(64, 172, QuantGrid{4, 32, false}).find("divisible by group_size 32"), std::string::npos);
  EXPECT_EQ(f.grid_refusal(64, 172, QuantGrid{4, -1, false}), "");
  const QuantizedLayer act = QuantizedLayer::from_grid(random_weight(16, 64, QuantGrid{4, 32, false}, true, 2));
  EXPECT_NE(f.layer_refusal(act).find("static_groups"), std::string::npos) << f.layer_refusal(act);
  EXPECT_TRUE(f.constraints.fp16_statistics);
}

TEST(PackedCheckpoint, CompressedTensorsFilesDequantizeIndependentlyAndReadBack) {
  const std::string tmp = test::temp_dir("packed_ct_ckpt");
  for (const QuantGrid g : {QuantGrid{4, 4, false}, QuantGrid{8, -1, true}, QuantGrid{3, -1, false}}) {
    SCOPED_TRACE("w" + std::to_string(g.bits) + " g" + std::to_string(g.group_size));
    const std::string out = tmp + "/w" + std::to_string(g.bits);
    auto layers = write_packed("compressed-tensors", g, false, tmp + "/src", out);
    EXPECT_EQ(detect_format(out)->name, std::string("compressed-tensors"));
    SafetensorsFile f(out + "/model.safetensors");
    auto back = read_packed_checkpoint(out);
    ASSERT_EQ(back.size(), layers.size());
    for (const auto& [name, q] : layers) {
      SCOPED_TRACE(name);
      expect_same(q, back.at(name).grid);
      EXPECT_FALSE(f.tensors().count(name + ".weight"));
      EXPECT_EQ(f.tensors().at(name + ".weight_shape").dtype, DType::I64);
      EXPECT_TRUE(compressed_tensors_dequantize_independently(f, name, q.rows, q.cols, g.bits, g.group_size, g.sym) ==
                  back.at(name).grid.dequantize());
    }
    auto cfg = nlohmann::json::parse(std::ifstream(out + "/config.json"));
    const auto& qc = cfg["quantization_config"];
    EXPECT_EQ(qc["quant_method"], "compressed-tensors");
    EXPECT_EQ(qc["format"], "pack-quantized");
    EXPECT_EQ(qc["quantization_status"], "compressed");
    const auto& w = qc["config_groups"]["group_0"]["weights"];
    EXPECT_EQ(w["num_bits"], g.bits);
    EXPECT_EQ(w["symmetric"], g.sym);
    EXPECT_EQ(w["strategy"], g.group_size > 0 ? "group" : "channel");
    if (g.group_size > 0) {
      EXPECT_EQ(w["group_size"], g.group_size);
    }
    EXPECT_EQ(qc["config_groups"]["group_0"]["targets"], nlohmann::json::array({"Linear"}));
    EXPECT_EQ(qc["ignore"], nlohmann::json::array({"lm_head"}));
  }
}

TEST(PackedCheckpoint, PackedModelRunsLikeTheDequantizedModel) {
  const std::string tmp = test::temp_dir("packed_run");
  auto layers = write_packed("gptq", QuantGrid{4, 32, false}, true, tmp + "/src", tmp + "/out");
  LoadedModel packed = load_model_for_inference(tmp + "/out");
  // blocks() is only offered non-const; looking is all this does.
  for (const auto& b : const_cast<LlamaModel&>(*packed.forward).blocks()) EXPECT_TRUE(b.q.packed && b.down.packed);
  LlamaModel dense(Model::open(tmp + "/src"));
  for (int l = 0; l < 1; ++l)
    for (const auto& short_name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      dense.blocks()[l].linear(short_name)->w = layers.at(layer_prefix(l) + short_name).dequantize();
  std::vector<int32_t> ids = {1, 5, 9, 33, 2, 70, 12};
  Mat a = packed.forward->logits(ids), b = dense.logits(ids);
  EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-4f * std::max(1.0f, b.cwiseAbs().maxCoeff()));
}

}  // namespace
}  // namespace ptq
