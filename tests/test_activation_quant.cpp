// Per-token activation fake quantization (ptq/activation_quant.h): the grid against a textbook
// per-row loop, the act(...) stage's specs, the linear layer's order (transform, then
// quantization), and checkpoints that record it and are evaluated with it.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "cli/jobs/compress_job.h"
#include "formats/checkpoint_writer.h"
#include "formats/kernels/packed_matmul.h"
#include "formats/loaded_model.h"
#include "ptq/activation_quant.h"
#include "ptq/error.h"
#include "ptq/linear.h"
#include "ptq/stages.h"
#include "support/shared_data.h"
#include "support/text_compress.h"

namespace ptq {
namespace {

Mat heavy_tailed(int rows, int cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    const double u = double(rng() >> 11) * 0x1.0p-53 * 2 - 1;
    m.data()[i] = float(u * u * u * 8);  // a few large entries per row
  }
  return m;
}

// QuaRot's ActQuantizer for one token, element by element.
std::vector<float> textbook_row(const float* x, int n, int bits, bool asym, double clip) {
  std::vector<float> out(x, x + n);
  if (!asym) {
    float m = 0;
    for (int j = 0; j < n; ++j) m = std::max(m, std::fabs(x[j]));
    m *= float(clip);
    if (m == 0) return out;
    const float maxq = float(std::pow(2.0, bits - 1) - 1), s = m / maxq;
    for (int j = 0; j < n; ++j) out[j] = s * std::clamp(std::nearbyint(x[j] / s), -maxq - 1, maxq);
    return out;
  }
  float lo = 0, hi = 0;
  for (int j = 0; j < n; ++j) {
    lo = std::min(lo, x[j]);
    hi = std::max(hi, x[j]);
  }
  lo *= float(clip);
  hi *= float(clip);
  if (hi == lo) return out;  // a row of zeros
  const float maxq = float(std::pow(2.0, bits) - 1), s = (hi - lo) / maxq, z = std::nearbyint(-lo / s);
  for (int j = 0; j < n; ++j) out[j] = s * (std::clamp(std::nearbyint(x[j] / s) + z, 0.0f, maxq) - z);
  return out;
}

TEST(ActivationQuant, EachTokenOnItsOwnGridAsTheTextbookLoop) {
  for (const auto& [bits, asym, clip] : std::vector<std::tuple<int, bool, double>>{
           {8, false, 1.0}, {4, false, 1.0}, {4, false, 0.9}, {4, true, 1.0}, {8, true, 0.9}, {3, true, 0.8}}) {
    SCOPED_TRACE(std::to_string(bits) + (asym ? " asym " : " sym ") + std::to_string(clip));
    const ActivationQuant a{bits, asym, clip};
    Mat x = heavy_tailed(7, 96, uint64_t(bits) * 3 + asym);
    x.row(2).setZero();
    const Mat before = x;
    quantize_activations(x, a);
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      const std::vector<float> want = textbook_row(before.row(r).data(), int(x.cols()), bits, asym, clip);
      std::set<float> levels;
      for (Eigen::Index c = 0; c < x.cols(); ++c) {
        EXPECT_EQ(x(r, c), want[size_t(c)]) << r << "," << c;
        levels.insert(x(r, c));
      }
      EXPECT_LE(levels.size(), size_t(1) << bits);
    }
    EXPECT_TRUE(x.row(2).isZero());
  }
  Mat off = heavy_tailed(2, 8, 1);
  const Mat kept = off;
  quantize_activations(off, ActivationQuant{});
  EXPECT_EQ(off, kept);
}

TEST(ActivationQuant, SpecsPrintBackAndRefuseNonsense) {
  for (const char* s : {"act(a8)", "act(a4)", "act(a4,asym)", "act(a4,asym,clip=0.9)"})
    EXPECT_EQ(activation_quant_spec(activation_quant_from_spec(parse_spec(s))), s);
  EXPECT_EQ(make_transform(parse_spec("act(a4,clip=0.9)"))->spec(), "act(a4,clip=0.9)");
  EXPECT_EQ(parse_runtime_quant("none").spec(), "none");
  EXPECT_EQ(parse_runtime_quant("kv(b4,hadamard)+act(a8)").spec(), "act(a8)+kv(b4,hadamard)");
  EXPECT_THROW(parse_runtime_quant("act(a8)+rtn(w4,g32)"), Error);
  for (const char* s : {"kv(b4)", "kv(b8,sym)", "kv(b4,hadamard)"})
    EXPECT_EQ(kv_quant_spec(kv_quant_from_spec(parse_spec(s))), s);
  for (const char* bad : {"kv", "kv(b1)", "kv(b4,clip=0.9)"})
    EXPECT_THROW(kv_quant_from_spec(parse_spec(bad)), Error) << bad;
  EXPECT_THROW(recipe_runtime_quant(parse_recipe("kv(b4)+kv(b8)+rtn(w4,g32)")), Error);
  for (const char* bad : {"act", "act(a1)", "act(a9)", "act(a4,clip=0)", "act(a4,clip=1.5)", "act(a4,sym2)"})
    EXPECT_THROW(activation_quant_from_spec(parse_spec(bad)), Error) << bad;
  EXPECT_THROW(recipe_activation_quant(parse_recipe("act(a8)+act(a4)+rtn(w4,g32)")), Error);
  EXPECT_EQ(recipe_activation_quant(parse_recipe("rot(hadamard)+act(a4)+gptq(w4,g64)")).bits, 4);
  EXPECT_FALSE(recipe_activation_quant(parse_recipe("gptq(w4,g64)")).enabled());
  EXPECT_FALSE(recipe_needs_stats(parse_recipe("act(a8)+rtn(w4,g32)")));
}

// The layer quantizes x·T, not x: what QuaRot's online Hadamard is for.
TEST(ActivationQuant, TheLinearLayerQuantizesItsTransformedInput) {
  Linear lin;
  lin.w = heavy_tailed(16, 64, 4);
  InputTransform t;
  t.size = 64;
  t.factors = hadamard_factors(64);
  lin.input_transform = std::make_shared<const InputTransform>(t);
  lin.act = ActivationQuant{4, false, 1.0};
  const Mat x = heavy_tailed(5, 64, 5);
  Mat xt = t.apply(x);
  quantize_activations(xt, lin.act);
  const Mat want = xt * lin.w.transpose();
  EXPECT_EQ(lin.forward(x), want);
  lin.input_transform.reset();
  Mat xq = x;
  quantize_activations(xq, lin.act);
  EXPECT_EQ(lin.forward(x), Mat(xq * lin.w.transpose()));
}

TEST(KvQuant, EachTokenAndHeadOnItsOwnAsymmetricGrid) {
  Mat k = heavy_tailed(5, 4 * 16, 8);
  const Mat before = k;
  quantize_kv(k, KvQuant{4, false, false}, 16);
  for (Eigen::Index r = 0; r < k.rows(); ++r)
    for (int h = 0; h < 4; ++h) {
      const std::vector<float> want = textbook_row(before.row(r).data() + h * 16, 16, 4, true, 1.0);
      for (int j = 0; j < 16; ++j) EXPECT_EQ(k(r, h * 16 + j), want[size_t(j)]);
    }
}

// R3 rotates queries and keys alike: q·kᵀ, so the logits, stay; the cache quantization then
// changes them, a little at 8 bits; the cached (generation) path computes what the full one does.
TEST(KvQuant, HadamardKeepsTheLogitsAndTheCachedPathAgrees) {
  PTQ_REQUIRE_SHARED("models/pydoc4M", path);
  const LlamaModel fp{Model::open(path)};
  const std::vector<int32_t> x = test::spread_ids(48);
  const Mat want = fp.logits(x);
  auto with = [&](const KvQuant& kv) {
    LlamaModel m = fp;
    for (BlockWeights& b : m.blocks()) b.kv = kv;
    return m;
  };
  const Mat rotated = with(KvQuant{0, false, true}).logits(x);
  EXPECT_LT(double((rotated - want).norm() / want.norm()), 1e-5);
  const double b8 = double((with(KvQuant{8, false, true}).logits(x) - want).norm() / want.norm());
  const double b4 = double((with(KvQuant{4, false, true}).logits(x) - want).norm() / want.norm());
  EXPECT_GT(b8, 0);
  EXPECT_LT(b8, 2e-2);
  EXPECT_GT(b4, 4 * b8);
  const LlamaModel q4 = with(KvQuant{4, false, true});
  KvCache cache(q4.config(), 48);
  const std::vector<int32_t> head(x.begin(), x.begin() + 30), tail(x.begin() + 30, x.end());
  q4.logits_cached(head, cache);
  const Mat last = q4.logits_cached(tail, cache), full = q4.logits(x).bottomRows(18);
  // The two attention paths round differently in the last bits, which moves a few 4-bit codes in
  // later blocks (measured 4.7e-4); a cache that skipped the quantization would be ~b4 away.
  const double cached = double((last - full).norm() / full.norm());
  EXPECT_LT(cached, 2e-3);
  EXPECT_LT(cached, 0.1 * double((want.bottomRows(18) - full).norm() / full.norm()));
}

class ActivationCheckpoints : public test::PydocCompressTest {
 protected:
  ActivationCheckpoints() { prefix_ = "act_"; }
};

// The packed checkpoint records act(a4); loading sets it on every block layer, whose composed
// kernel applies down_proj's online Hadamard before it quantizes, so x·H is what gets quantized.
TEST_F(ActivationCheckpoints, ThePackedCheckpointIsEvaluatedWithItsActivationQuantization) {
  const std::string out = compress("rot(hadamard,online)+act(a4)+gptq(w4,g64)", "ptq", "packed");
  EXPECT_EQ(checkpoint_recipe(out), "rot(hadamard,online)+act(a4)+gptq(w4,g64)");
  const LoadedModel loaded = load_model_for_inference(out);
  EXPECT_EQ(loaded.activations.spec(), "act(a4)");
  const auto layers = format_traits("ptq").read_layers(loaded.model);
  LoadedModel weight_only = load_model_for_inference(out, false, RuntimeQuant{});
  LlamaModel by_hand = *weight_only.forward, dense = *weight_only.forward;
  int transformed = 0;
  for (const auto& [name, layer] : layers) {
    const int l = std::stoi(name.substr(std::string("model.layers.").size()));
    const std::string short_name = name.substr(layer_prefix(l).size());
    for (LlamaModel* m : {&by_hand, &dense}) {
      Linear* lin = m->blocks()[size_t(l)].linear(short_name);
      lin->act = ActivationQuant{4, false, 1.0};
      if (m == &dense) {
        lin->packed.reset();
        lin->w = layer.stored_weight();
        if (layer.input_transform) lin->input_transform = std::make_shared<const InputTransform>(*layer.input_transform);
      } else {
        lin->packed = make_composed_linear(layer);  // T inside, then the integer grid (matmul_quantized)
      }
    }
    transformed += layer.input_transform.has_value();
  }
  EXPECT_EQ(transformed, 4);
  const Mat a = loaded.forward->logits(test::spread_ids(40));
  EXPECT_EQ(a, by_hand.logits(test::spread_ids(40)));
  // Against dense products the kernels' last-bit differences move a few 4-bit activation codes
  // (each by a whole step of its token's grid): measured 3.0e-2 here; 1e-6 with activations off.
  const Mat d = dense.logits(test::spread_ids(40));
  EXPECT_LT(double((a - d).norm() / d.norm()), 6e-2);
  const Mat w = weight_only.forward->logits(test::spread_ids(40));
  EXPECT_GT(double((a - w).norm() / w.norm()), 0.1) << "4-bit activations changed little";
}

TEST_F(ActivationCheckpoints, FormatsOtherEnginesRunRefuseIt) {
  EXPECT_THROW(compress("act(a8)+gptq(w4,g64)", "gptq", "gptq"), Error);
  EXPECT_THROW(compress("act(a8)+rtn(w4,g64)", "gguf(q4_0)", "gguf"), Error);
  // The fake format folds online transforms into the weights: the quantized input would be x, not x·T.
  EXPECT_THROW(compress("rot(hadamard,online)+act(a8)+rtn(w4,g64)", "fake", "fake_online"), Error);
  const std::string fake = compress("rot(hadamard)+act(a8,asym)+rtn(w4,g64)", "fake", "fake");
  EXPECT_EQ(load_model_for_inference(fake).activations.spec(), "act(a8,asym)");
  EXPECT_THROW(compress("kv(b4)+gptq(w4,g64)", "gptq", "gptq_kv"), Error);
  const std::string kv = compress("kv(b4,hadamard)+rtn(w4,g64)", "ptq", "kv");
  const LoadedModel loaded = load_model_for_inference(kv);
  EXPECT_EQ(loaded.activations.spec(), "kv(b4,hadamard)");
  for (const BlockWeights& b : loaded.forward->blocks()) EXPECT_EQ(kv_quant_spec(b.kv), "kv(b4,hadamard)");
}

}  // namespace
}  // namespace ptq
