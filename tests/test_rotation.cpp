// The rot transform (algorithms/rotation.cpp): R1/R2 folded rotations keep the model's function
// on three real models, R4's online Hadamard survives write → read → eval, and the Kronecker
// Hadamard the kernels run is the dense orthogonal matrix.
#include <gtest/gtest.h>

#include <random>

#include "calibration/calibration_set.h"
#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "cli/jobs/compress_job.h"
#include "formats/checkpoint_writer.h"
#include "formats/loaded_model.h"
#include "ptq/error.h"
#include "ptq/eval.h"
#include "ptq/pipeline.h"
#include "ptq/stages.h"
#include "support/shared_data.h"
#include "support/text_compress.h"

namespace ptq {
namespace {

// fp32 weights rotated once (fp64 accumulation, one rounding) and 30 blocks of fp32 forward.
constexpr double kRotatedLogitsTolerance = 1e-5;

double relative_difference(const Mat& a, const Mat& b) {
  return double((a - b).norm()) / double(b.norm());
}

// The rotated model's head and blocks as the pipeline rewrites them.
LlamaModel rotated(const Model& model, const std::string& spec, std::vector<std::string>* log = nullptr) {
  const auto t = make_transform(parse_spec(spec));
  EXPECT_TRUE(t->rewrites_model());
  HeadWeights head = HeadWeights::load(model);
  QuantLog qlog;
  t->rewrite_head(model.config(), head, &qlog);
  std::vector<BlockWeights> blocks;
  for (int l = 0; l < model.config().num_layers; ++l) {
    blocks.push_back(BlockWeights::load(model, l));
    t->rewrite_block(model.config(), l, blocks.back());
  }
  if (log) *log = qlog.messages;
  return LlamaModel(model.config(), std::move(head), std::move(blocks));
}

std::vector<int32_t> some_ids(int vocab, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint64_t(vocab));
  return ids;
}

void expect_rotation_keeps_logits(const std::string& path, const std::string& spec) {
  SCOPED_TRACE(path + " " + spec);
  const Model model = Model::open(path);
  const std::vector<int32_t> ids = some_ids(model.config().vocab_size, 24, 5);
  const Mat want = LlamaModel(model).logits(ids);
  std::vector<std::string> log;
  const Mat got = rotated(model, spec, &log).logits(ids);
  EXPECT_LT(relative_difference(got, want), kRotatedLogitsTolerance);
  EXPECT_FALSE(log.empty());
}

TEST(Rotation, SpecsPrintBackAndNeedAKind) {
  for (const char* s : {"rot(hadamard)", "rot(random)", "rot(hadamard,seed=7,online)", "rot(random,online)"})
    EXPECT_EQ(make_transform(parse_spec(s))->spec(), s);
  EXPECT_EQ(make_transform(parse_spec("rot(hadamard,seed=0)"))->spec(), "rot(hadamard)");
  EXPECT_THROW(make_transform(parse_spec("rot")), Error);
  EXPECT_THROW(make_transform(parse_spec("rot(hadamard,random)")), Error);
  EXPECT_THROW(make_transform(parse_spec("rot(hadamard,r4)")), Error);
  EXPECT_THROW(make_transform(parse_spec("rot(hadamard,seed=-1)")), Error);
  const std::string recipe = "rot(hadamard)+awq+gptq(w4,g128,act_order)+lorc(r32)";
  EXPECT_EQ(recipe_to_string(parse_recipe(recipe)), recipe);
  EXPECT_EQ(split_recipe(parse_recipe(recipe)).transforms.size(), 2u);
  EXPECT_FALSE(recipe_needs_stats(parse_recipe("rot(hadamard)+rtn(w4,g32)")));
  EXPECT_TRUE(recipe_needs_stats(parse_recipe("rot(hadamard)+awq+rtn(w4,g32)")));
}

// The sizes of the shared models' residual streams, MLPs and heads: the Kronecker transform the
// FWHT kernel runs equals the dense product by its orthogonal matrix.
TEST(Rotation, KroneckerHadamardIsTheDenseOrthogonalProduct) {
  EXPECT_EQ(hadamard_factors(576), (std::vector<int>{4, 12, 12}));
  EXPECT_EQ(hadamard_factors(1536), (std::vector<int>{128, 12}));
  EXPECT_EQ(hadamard_factors(768), (std::vector<int>{64, 12}));
  std::mt19937_64 rng(3);
  for (int n : {8, 64, 256, 576, 768, 1536}) {
    SCOPED_TRACE(n);
    InputTransform t;
    t.size = n;
    t.factors = hadamard_factors(n);
    for (int i = 0; i < n; ++i) t.signs.push_back((rng() >> 63) ? int8_t(-1) : int8_t(1));
    const Eigen::MatrixXd m = t.matrix().cast<double>();
    EXPECT_LT((m.transpose() * m - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff(), 1e-6);
    Mat x(3, n);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(double(rng() >> 11) * 0x1.0p-52 - 1.0);
    const Mat dense = (x.cast<double>() * m).cast<float>();
    EXPECT_LT(relative_difference(t.apply(x), dense), 1e-6);
  }
}

TEST(Rotation, FoldedRotationsKeepTheLogitsOfStories260K) {
  PTQ_REQUIRE_SHARED("models/stories260K/stories260K.bin", path);
  expect_rotation_keeps_logits(path, "rot(hadamard)");
  expect_rotation_keeps_logits(path, "rot(random,seed=3)");
}

TEST(Rotation, FoldedRotationsKeepTheLogitsOfPydoc4M) {
  PTQ_REQUIRE_SHARED("models/pydoc4M", path);
  expect_rotation_keeps_logits(path, "rot(hadamard)");
  expect_rotation_keeps_logits(path, "rot(random,seed=1)");
}

TEST(Rotation, FoldedRotationsKeepTheLogitsOfSmolLM2) {
  PTQ_REQUIRE_SHARED("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", path);
  expect_rotation_keeps_logits(path, "rot(hadamard)");
}

TEST(Rotation, SeedsGiveDifferentRotations) {
  PTQ_REQUIRE_SHARED("models/pydoc4M", path);
  const Model model = Model::open(path);
  const LlamaModel a = rotated(model, "rot(hadamard)"), b = rotated(model, "rot(hadamard,seed=1)");
  EXPECT_NE(a.blocks()[0].q.w, b.blocks()[0].q.w);
  EXPECT_EQ(a.blocks()[0].q.w, rotated(model, "rot(hadamard)").blocks()[0].q.w);
}

class RotatedCheckpoints : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::shared_path("models/pydoc4M");
    calib_ = test::shared_path("data/pydoc/calib.txt");
    eval_ = test::shared_path("data/pydoc/eval.txt");
    if (model_.empty() || calib_.empty() || eval_.empty())
      GTEST_SKIP() << "shared data (pydoc4M, pydoc text) not found: set PTQ_SHARED_DIR";
  }

  std::string compress(const std::string& recipe, const std::string& format, const std::string& name,
                       std::vector<LayerOverride> overrides = {}) {
    CompressJob job = test::text_compress_job(model_, calib_, recipe, format, "rotation_" + name);
    job.pipeline.overrides = std::move(overrides);
    last_ = run_compress(job);
    return job.out_dir;
  }

  Mat logits(const std::string& checkpoint, const std::vector<int32_t>& ids) {
    LoadedModel loaded = load_model_for_inference(checkpoint);
    return loaded.forward->logits(ids);
  }

  std::string model_, calib_, eval_;
  CompressResult last_;
};

// Every layer skipped: the output is the rotated model in full precision, written, read back and
// run by the same loader `ptq eval` uses.
TEST_F(RotatedCheckpoints, TheRotatedFullPrecisionCheckpointKeepsTheLogits) {
  LayerOverride skip_all;
  skip_all.pattern = ".";
  skip_all.skip = true;
  const std::vector<int32_t> ids = some_ids(2048, 32, 9);
  const Mat want = LlamaModel(Model::open(model_)).logits(ids);
  const std::string out = compress("rot(hadamard,online)+rtn(w4,g64)", "fake", "skip", {skip_all});
  const Model written = Model::open(out);
  EXPECT_NE(written.weight("model.layers.0.self_attn.q_proj.weight"),
            Model::open(model_).weight("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_EQ(written.weight("model.norm.weight"), Mat::Ones(256, 1).transpose());
  EXPECT_LT(relative_difference(logits(out, ids), want), kRotatedLogitsTolerance);
}

// R4 lives in the native checkpoint as each down_proj's input transform; the kernels apply it
// online and compute what the layers' effective weights (transform folded in) compute.
TEST_F(RotatedCheckpoints, TheOnlineHadamardSurvivesWriteReadEval) {
  const std::string recipe = "rot(hadamard,online)+gptq(w4,g64)";
  const std::string packed = compress(recipe, "ptq", "packed");
  int with_transform = 0;
  for (const auto& l : last_.layers) {
    const bool down = l.name.ends_with("down_proj");
    EXPECT_EQ(l.parts, down ? "grid+input_transform" : "grid") << l.name;
    with_transform += down;
    if (l.layer == 0 && l.name.ends_with("q_proj")) {
      ASSERT_FALSE(l.log.empty());
      EXPECT_NE(l.log.front().find("model: rot: R1 Hadamard"), std::string::npos) << l.log.front();
    }
  }
  EXPECT_EQ(with_transform, 4);
  const auto layers = format_traits("ptq").read_layers(Model::open(packed));
  LoadedModel loaded = load_model_for_inference(packed);
  LlamaModel effective = *loaded.forward;
  for (const auto& [name, layer] : layers) {
    EXPECT_EQ(layer.input_transform.has_value(), name.ends_with("down_proj")) << name;
    const int l = std::stoi(name.substr(std::string("model.layers.").size()));
    Linear* lin = effective.blocks()[size_t(l)].linear(name.substr(layer_prefix(l).size()));
    lin->packed.reset();
    lin->w = layer.effective_weight();
  }
  const std::vector<int32_t> ids = some_ids(2048, 48, 11);
  EXPECT_LT(relative_difference(loaded.forward->logits(ids), effective.logits(ids)), 1e-4);
  // Rerunning the job gives the same weights, bit for bit.
  const std::string fake = compress(recipe, "fake", "fake");
  EXPECT_EQ(Model::open(fake).weight("model.layers.3.mlp.down_proj.weight"),
            Model::open(compress(recipe, "fake", "fake2")).weight("model.layers.3.mlp.down_proj.weight"));
}

// Formats that cannot carry an online transform refuse it by name; the folded rotations alone
// (no online) give a plain Llama every format writes.
TEST_F(RotatedCheckpoints, FormatsWithoutInputTransformsRefuseR4AndTakeFoldedRotations) {
  EXPECT_THROW(compress("rot(hadamard,online)+gptq(w4,g64)", "gptq", "gptq_r4"), Error);
  const std::string out = compress("rot(hadamard)+gptq(w4,g64)", "gptq", "gptq");
  for (const auto& l : last_.layers) EXPECT_EQ(l.parts, "grid") << l.name;
  EXPECT_TRUE(Model::open(out).config().tie_word_embeddings == false);
}

// Inputs captured from the original model do not describe the rotated one.
class NoCaptures final : public CapturedInputs {
 public:
  void check_fits(const ModelConfig&) const override {}
  InputStats input_stats(const std::string&) const override {
    ADD_FAILURE() << "read before the refusal";
    return InputStats(1);
  }
};

TEST(Rotation, IndependentModeRefusesModelRotations) {
  PTQ_REQUIRE_SHARED("models/pydoc4M", path);
  PipelineOptions o;
  o.recipe = parse_recipe("rot(hadamard)+rtn(w4,g32)");
  o.quiet = true;
  const Model model = Model::open(path);
  EXPECT_THROW(quantize_independent(model, NoCaptures(), o, [](const LayerResult&, const QuantizedLayer*) {}),
               Error);
}

}  // namespace
}  // namespace ptq
