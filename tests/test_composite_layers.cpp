// Additivity of the composite quantized layer: stages the pipeline has never heard of (defined
// and registered only in this test) add a low-rank branch, sparse outliers and an online Hadamard
// input transform; each result goes pipeline → native ptq format → reader → kernels → eval and
// matches the layer's effective_weight() within a named tolerance. Real model: pydoc4M.
#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "calibration/calibration_set.h"
#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "cli/jobs/compress_job.h"
#include "formats/checkpoint_writer.h"
#include "formats/loaded_model.h"
#include "ptq/error.h"
#include "ptq/eval.h"
#include "ptq/stages.h"
#include "support/shared_data.h"
#include "support/text_compress.h"

namespace ptq {
namespace {

float f16(float x) { return f16_to_f32(f32_to_f16(x)); }

Mat uniform(int rows, int cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(double(rng() >> 11) * 0x1.0p-52 - 1.0);
  return m;
}

// Rank-2 branch fitted to the quantization error by an SVD (fp16 factors, √σ on each side).
class TestRank2 final : public LayerRefiner {
 public:
  std::string spec() const override { return "test_rank2"; }
  bool needs_stats() const override { return false; }
  void refine(const WeightQuantizer&, const Mat& w, const InputStats*, QuantizedLayer& q, QuantLog* log) const override {
    const Eigen::MatrixXd e = (w - q.stored_weight()).cast<double>();
    Eigen::BDCSVD<Eigen::MatrixXd> svd(e, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const int r = 2;
    LowRankBranch b;
    b.l1.resize(w.rows(), r);
    b.l2.resize(r, w.cols());
    for (int i = 0; i < r; ++i) {
      const double s = std::sqrt(svd.singularValues()(i));
      for (Eigen::Index n = 0; n < w.rows(); ++n) b.l1(n, i) = f16(float(svd.matrixU()(n, i) * s));
      for (Eigen::Index k = 0; k < w.cols(); ++k) b.l2(i, k) = f16(float(svd.matrixV()(k, i) * s));
    }
    q.low_rank = std::move(b);
    if (log) log->messages.push_back("test_rank2: added a rank-2 branch");
  }
};

// The 1% largest quantization errors kept exactly as sparse fp16 corrections.
class TestOutliers final : public LayerRefiner {
 public:
  std::string spec() const override { return "test_outliers"; }
  bool needs_stats() const override { return false; }
  void refine(const WeightQuantizer&, const Mat& w, const InputStats*, QuantizedLayer& q, QuantLog*) const override {
    const Mat e = w - q.stored_weight();
    std::vector<float> mags(e.data(), e.data() + e.size());
    for (auto& m : mags) m = std::fabs(m);
    const size_t keep = std::max<size_t>(1, mags.size() / 100);
    std::nth_element(mags.begin(), mags.begin() + (mags.size() - keep), mags.end());
    const float threshold = mags[mags.size() - keep];
    Mat residual = Mat::Zero(e.rows(), e.cols());
    for (Eigen::Index i = 0; i < e.size(); ++i)
      if (std::fabs(e.data()[i]) >= threshold) residual.data()[i] = e.data()[i];
    q.sparse = SparseResidual::from_dense(residual);
  }
};

// An online random-sign Hadamard on every group whose width has Kronecker factors.
class TestHadamard final : public WeightTransform {
 public:
  std::string spec() const override { return "test_hadamard"; }
  void apply(GroupContext& g, QuantLog* log) const override {
    const int k = g.stats->k();
    InputTransform t;
    t.kind = InputTransform::Kind::kHadamard;
    t.size = k;
    t.factors = hadamard_factors(k);
    if (t.factors.empty()) return;
    uint64_t state = 0x9e3779b97f4a7c15ull ^ uint64_t(k);
    t.signs.resize(k);
    for (auto& s : t.signs) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      s = (state >> 63) ? int8_t(-1) : int8_t(1);
    }
    attach_input_transform(g, t);
    if (log) log->messages.push_back("test_hadamard: online Hadamard of " + std::to_string(k));
  }
};

const RefinerRegistrar kRank2("test_rank2", [](const Spec& s) -> std::unique_ptr<LayerRefiner> {
  s.check_all_used();
  return std::make_unique<TestRank2>();
});
const RefinerRegistrar kOutliers("test_outliers", [](const Spec& s) -> std::unique_ptr<LayerRefiner> {
  s.check_all_used();
  return std::make_unique<TestOutliers>();
});
const TransformRegistrar kHadamard("test_hadamard", [](const Spec& s) -> std::unique_ptr<WeightTransform> {
  s.check_all_used();
  return std::make_unique<TestHadamard>();
});

// The composed kernel (fp32 decode of the dense tiles, then the sparse, low-rank and transform
// parts in fp32) against x·effective_weight()ᵀ, relative to Σ|x|·|w| per output.
constexpr double kComposedTolerance = 1e-4;

struct Pydoc {
  std::string model, calib, eval;
};

class CompositeLayers : public ::testing::Test {
 protected:
  void SetUp() override {
    d_.model = test::shared_path("models/pydoc4M");
    d_.calib = test::shared_path("data/pydoc/calib.txt");
    d_.eval = test::shared_path("data/pydoc/eval.txt");
    if (d_.model.empty() || d_.calib.empty() || d_.eval.empty())
      GTEST_SKIP() << "shared data (pydoc4M, pydoc text) not found: set PTQ_SHARED_DIR";
  }

  std::string compress(const std::string& recipe, const std::string& format, const std::string& name) {
    const CompressJob job = test::text_compress_job(d_.model, d_.calib, recipe, format, "composite_" + name);
    last_ = run_compress(job);
    return job.out_dir;
  }

  CalibrationRequest request() const { return {d_.calib, DataFormat::kText, false, 8, 64, 0}; }

  double ppl(const LlamaModel& m) {
    Model model = Model::open(d_.model);
    auto tok = open_model_tokenizer(d_.model, model.config().vocab_size, "");
    TokenSeqs seqs = eval_sequences(tokenize_documents(d_.eval, DataFormat::kText, tok.get(), false),
                                    DataFormat::kText, 64, 4);
    return evaluate_perplexity([&](const auto& ids) { return m.logits(ids); }, seqs).ppl;
  }

  // The layers the pipeline hands the ptq writer, in memory (same windows, same constraints).
  std::map<std::string, QuantizedLayer> in_memory(const std::string& recipe) {
    Model model = Model::open(d_.model);
    auto tok = open_model_tokenizer(d_.model, model.config().vocab_size, "");
    CalibrationSet calib = build_calibration_set(model, tok.get(), request());
    PipelineOptions o;
    o.recipe = parse_recipe(recipe);
    o.constraints = format_traits("ptq").constraints;
    o.quiet = true;
    std::map<std::string, QuantizedLayer> out;
    quantize_sequential(model, calib.windows, o, [&](const LayerResult& r, const QuantizedLayer* q) {
      if (q) out.emplace(r.name, *q);
    });
    return out;
  }

  // Every quantized layer read back from `out` must equal the pipeline's, hold `parts`, and run
  // on the kernels within the named tolerance of its effective weight; the whole model evaluates
  // as the effective weights do.
  void check_round_trip(const std::string& out, const std::map<std::string, QuantizedLayer>& expected,
                        const std::string& parts) {
    Model packed = Model::open(out);
    const auto layers = format_traits("ptq").read_layers(packed);
    ASSERT_EQ(layers.size(), expected.size());
    LoadedModel loaded = load_model_for_inference(out);
    // The checkpoint's own norms and other tensors (a smoothing transform folds into the gains).
    LlamaModel effective = *loaded.forward;
    int with_parts = 0;
    for (const auto& [name, layer] : layers) {
      SCOPED_TRACE(name);
      EXPECT_TRUE(layer == expected.at(name)) << "the native format changed the layer";
      with_parts += layer.part_names() == parts;
      const Mat eff = layer.effective_weight();
      const int l = std::stoi(name.substr(std::string("model.layers.").size()));
      const std::string short_name = name.substr(layer_prefix(l).size());
      Linear* dense = effective.blocks()[size_t(l)].linear(short_name);
      dense->packed.reset();
      dense->w = eff;
      // The layer as the loaded model runs it.
      const Linear* lin = loaded.forward->blocks().at(size_t(l)).linear(short_name);
      ASSERT_TRUE(lin && lin->packed);
      Mat x = uniform(5, int(eff.cols()), uint64_t(l) * 7 + 1);
      Mat y = lin->forward(x);
      Mat ref = x * eff.transpose();
      Mat scale = x.cwiseAbs() * eff.cwiseAbs().transpose();
      EXPECT_LE(((y - ref).cwiseAbs().array() / scale.array()).maxCoeff(), kComposedTolerance);
    }
    EXPECT_GT(with_parts, 0) << "no layer holds " << parts;
    const double ppl_kernels = ppl(*loaded.forward), ppl_effective = ppl(effective);
    EXPECT_NEAR(ppl_kernels, ppl_effective, 1e-4 * ppl_effective);
  }

  Pydoc d_;
  CompressResult last_;
};

TEST_F(CompositeLayers, RecipesNamingTestStagesParseByRole) {
  RecipeStages s = split_recipe(parse_recipe("test_hadamard+rtn(w4,g32)+test_rank2+test_outliers"));
  EXPECT_EQ(s.transforms.size(), 1u);
  EXPECT_EQ(s.quantizer.name, "rtn");
  EXPECT_EQ(s.refiners.size(), 2u);
  EXPECT_EQ(recipe_to_string(parse_recipe("test_hadamard+rtn(w4,g32)+test_rank2")), "test_hadamard+rtn(w4,g32)+test_rank2");
  EXPECT_THROW(split_recipe(parse_recipe("test_rank2+rtn(w4,g32)")), Error);
  EXPECT_THROW(split_recipe(parse_recipe("rtn(w4,g32)+test_hadamard")), Error);
  EXPECT_THROW(split_recipe(parse_recipe("rtn(w4,g32)+gptq(w4,g32)")), Error);
}

TEST_F(CompositeLayers, EachTestStageRoundTripsThroughTheNativeFormatAndTheKernels) {
  for (const auto& [recipe, parts] : std::vector<std::pair<std::string, std::string>>{
           {"gptq(w3,g64)+test_rank2", "grid+low_rank"},
           {"gptq(w3,g64)+lorc(r8)", "grid+low_rank"},
           {"svdquant(r8)+gptq(w3,g64)+lorc(r4)", "grid+low_rank"},
           {"gptq(w3,g64)+test_outliers", "grid+sparse"},
           {"test_hadamard+gptq(w3,g64)", "grid+input_transform"},
           {"test_hadamard+gptq(w3,g64)+test_rank2+test_outliers", "grid+sparse+low_rank+input_transform"}}) {
    SCOPED_TRACE(recipe);
    const std::string out = compress(recipe, "ptq", "rt" + std::to_string(std::hash<std::string>()(recipe) % 100000));
    for (const auto& l : last_.layers) EXPECT_FALSE(l.parts.empty());
    check_round_trip(out, in_memory(recipe), parts);
  }
}

// SpQR's layers (coded statistics, fractional zeros, act-order g_idx, CSR outliers) through the
// native format, the reader and the composed kernel: equal layers, and the packed model's
// perplexity within 1e-4 relative of the fake-quant (effective-weight) model's.
TEST_F(CompositeLayers, SpqrRoundTripsThroughTheNativeFormatAndTheKernels) {
  const std::string recipe = "spqr(w3,g16,qq3,qg16,outlier=0.2)";
  const std::string out = compress(recipe, "ptq", "spqr");
  int with_outliers = 0;
  for (const auto& l : last_.layers) with_outliers += l.sparse_share > 0;
  EXPECT_GT(with_outliers, 0);
  check_round_trip(out, in_memory(recipe), "grid+coded_statistics+sparse");
}

TEST_F(CompositeLayers, RefinersLowerTheLayerErrorAndCountTheirBits) {
  // RTN: its errors are independent per weight (GPTQ's compensate each other, so removing the
  // largest ones need not lower the output error).
  compress("rtn(w3,g64)", "ptq", "plain");
  const CompressResult plain = last_;
  compress("rtn(w3,g64)+test_rank2", "ptq", "rank2");
  const CompressResult rank2 = last_;
  compress("rtn(w3,g64)+test_outliers", "ptq", "outliers");
  const CompressResult outliers = last_;
  ASSERT_EQ(plain.layers.size(), rank2.layers.size());
  int lower_rank2 = 0, lower_outliers = 0;
  for (size_t i = 0; i < plain.layers.size(); ++i) {
    const auto& p = plain.layers[i];
    lower_rank2 += rank2.layers[i].rel_error < p.rel_error;
    lower_outliers += outliers.layers[i].rel_error < p.rel_error;
    // Branch bits: 16·r·(N + K) per layer; outliers: 32 per value plus the row offsets.
    const double n = p.rows, k = p.cols;
    EXPECT_NEAR(rank2.layers[i].bits_per_weight - p.bits_per_weight, 16.0 * 2 * (n + k) / (n * k), 1e-9);
    EXPECT_GT(outliers.layers[i].bits_per_weight - p.bits_per_weight, 0.32);
  }
  // Both refiners fit the error of the weights only (not H-weighted), so a layer's output error
  // may rise; on most layers it falls.
  EXPECT_GE(lower_rank2, int(plain.layers.size()) * 3 / 4);
  EXPECT_GE(lower_outliers, int(plain.layers.size()) * 3 / 4);
}

// LoRC with `hessian` fits its branch to the H-weighted error, the output error on the calibration
// tokens: every layer's falls, and the branch costs exactly 16·r·(N + K) bits.
TEST_F(CompositeLayers, LorcLowersEveryLayersCalibrationError) {
  compress("gptq(w3,g64)", "ptq", "lorc_base");
  const CompressResult plain = last_;
  compress("gptq(w3,g64)+lorc(r8,hessian)", "ptq", "lorc8");
  ASSERT_EQ(plain.layers.size(), last_.layers.size());
  for (size_t i = 0; i < plain.layers.size(); ++i) {
    const auto& p = plain.layers[i];
    SCOPED_TRACE(p.name);
    EXPECT_LT(last_.layers[i].rel_error, p.rel_error);
    EXPECT_NEAR(last_.layers[i].bits_per_weight - p.bits_per_weight, 16.0 * 8 * (p.rows + p.cols) / (double(p.rows) * p.cols), 1e-9);
  }
}

TEST_F(CompositeLayers, GptqAndAwqFormatsRefuseWhatTheyCannotCarryNamingTheLayer) {
  for (const char* format : {"gptq", "awq"}) {
    try {
      compress("rtn(w4,g64)+test_rank2", format, std::string("refuse_") + format);
      ADD_FAILURE() << format << " accepted a low-rank branch";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("model.layers.0.self_attn.q_proj"), std::string::npos) << msg;
      EXPECT_NE(msg.find("low_rank"), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace ptq
