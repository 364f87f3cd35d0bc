// The layer-by-layer pipeline on the real stories260K model: GPTQ beats RTN in perplexity,
// overrides apply, and independent mode (inputs from a calibration file) runs without a forward.
#include <gtest/gtest.h>

#include <map>

#include "ptq/spec.h"
#include "calibration/calibration_set.h"
#include "ptq/eval.h"
#include "ptq/forward.h"
#include "ptq/pipeline.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

struct Stories {
  std::string model, tok, data;
};

// Quantizes with `recipe` and returns the TinyStories perplexity of the fake-quant model.
double quantized_ppl(const Model& model, const CalibrationSet& calib, const TokenSeqs& eval,
                     const std::string& recipe, std::vector<LayerResult>* layers = nullptr) {
  PipelineOptions o;
  o.recipe = parse_recipe(recipe);
  o.quiet = true;
  std::map<std::string, Mat> deq;
  auto results = quantize_sequential(model, calib.windows, o, [&](const LayerResult& r, const QuantizedLayer* q) {
    if (q) deq[r.name] = q->effective_weight();
  });
  if (layers) *layers = results;
  LlamaModel lm(model);
  for (int l = 0; l < model.config().num_layers; ++l)
    for (int g = 0; g < kNumLinearInputs; ++g)
      for (const auto& name : linear_short_names(LinearInput(g))) {
        auto it = deq.find(layer_prefix(l) + name);
        if (it != deq.end()) lm.blocks()[l].linear(name)->w = it->second;
      }
  return evaluate_perplexity([&](const auto& ids) { return lm.logits(ids); }, eval).ppl;
}

class StoriesPipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    model_path_ = test::shared_path("models/stories260K/hf");
    tok_path_ = test::shared_path("models/stories260K/tok512.bin");
    data_path_ = test::shared_path("data/tinystories/validation_100.txt");
    if (model_path_.empty() || tok_path_.empty() || data_path_.empty())
      GTEST_SKIP() << "shared data (stories260K, tinystories) not found: set PTQ_SHARED_DIR";
    model_ = std::make_unique<Model>(Model::open(model_path_));
    tok_ = load_tokenizer(tok_path_);
    CalibrationRequest req{data_path_, DataFormat::kTinyStories, false, 64, 256, 0};
    calib_ = build_calibration_set(*model_, tok_.get(), req);
    eval_ = eval_sequences(tokenize_documents(data_path_, DataFormat::kTinyStories, tok_.get(), false),
                           DataFormat::kTinyStories, 512, 20);
    LlamaModel fp(*model_);
    fp_ppl_ = evaluate_perplexity([&](const auto& ids) { return fp.logits(ids); }, eval_).ppl;
  }
  std::string model_path_, tok_path_, data_path_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  CalibrationSet calib_;
  TokenSeqs eval_;
  double fp_ppl_ = 0;
};

TEST_F(StoriesPipeline, GptqIsCloserToFullPrecisionThanRtn) {
  for (int bits : {4, 3}) {
    std::string grid = "(w" + std::to_string(bits) + ",g32)";
    double rtn = quantized_ppl(*model_, calib_, eval_, "rtn" + grid);
    double gptq = quantized_ppl(*model_, calib_, eval_, "gptq" + grid);
    std::printf("W%d g32: fp %.4f  rtn %.4f  gptq %.4f\n", bits, fp_ppl_, rtn, gptq);
    EXPECT_GT(rtn, fp_ppl_);
    EXPECT_LT(gptq - fp_ppl_, rtn - fp_ppl_) << "bits " << bits;
  }
}

TEST_F(StoriesPipeline, OverridesSkipAndChangeBits) {
  PipelineOptions o;
  o.recipe = parse_recipe("rtn(w4,g32)");
  o.quiet = true;
  o.overrides.push_back({"mlp\\.down_proj$", std::nullopt, std::nullopt, true, {}, {}});
  o.overrides.push_back({"layers\\.0\\.self_attn", 8, 64, false, {}, {}});
  std::map<std::string, std::string> spec_of;
  auto results = quantize_sequential(*model_, calib_.windows, o, [&](const LayerResult& r, const QuantizedLayer* q) {
    EXPECT_EQ(q == nullptr, r.skipped) << r.name;
    spec_of[r.name] = r.spec;
  });
  ASSERT_EQ(results.size(), size_t(5 * 7));
  EXPECT_EQ(spec_of["model.layers.2.mlp.down_proj"], "skip");
  EXPECT_EQ(spec_of["model.layers.0.self_attn.q_proj"], "rtn(w8,g64)");
  EXPECT_EQ(spec_of["model.layers.1.self_attn.q_proj"], "rtn(w4,g32)");
}

TEST_F(StoriesPipeline, OverrideArgsChangeAQuantizersArguments) {
  PipelineOptions o;
  o.recipe = parse_recipe("spqr(w3,g16,qq3,qg16)");
  o.quiet = true;
  LayerOverride down;
  down.pattern = "mlp\\.down_proj$";
  down.args = {{"outlier", "0.5"}, {"perm", "identity"}};
  o.overrides.push_back(down);
  std::map<std::string, LayerResult> result_of;
  quantize_sequential(*model_, calib_.windows, o, [&](const LayerResult& r, const QuantizedLayer*) {
    result_of[r.name] = r;
  });
  EXPECT_EQ(result_of["model.layers.1.mlp.down_proj"].spec, "spqr(w3,g16,qq3,qg16,outlier=0.5,perm=identity)");
  EXPECT_EQ(result_of["model.layers.1.mlp.up_proj"].spec, "spqr(w3,g16,qq3,qg16)");
  // The outlier share is in each result and its log line.
  const LayerResult& up = result_of["model.layers.1.mlp.up_proj"];
  EXPECT_GT(up.sparse_share, 0.0);
  EXPECT_LT(up.sparse_share, 0.2);
  ASSERT_FALSE(up.log.empty());
  EXPECT_NE(up.log.back().find("outliers, share"), std::string::npos);
}

TEST_F(StoriesPipeline, PerLayerErrorsAreRecordedInModelOrder) {
  std::vector<LayerResult> layers;
  quantized_ppl(*model_, calib_, eval_, "rtn(w3,g32)", &layers);
  ASSERT_EQ(layers.size(), linear_layer_names(model_->config()).size());
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(layers[i].name, linear_layer_names(model_->config())[i]);
    EXPECT_GT(layers[i].rel_error, 0.0);
    EXPECT_LT(layers[i].rel_error, 1.0);
    EXPECT_GT(layers[i].bits_per_weight, 3.0);
  }
}

TEST_F(StoriesPipeline, IndependentModeMatchesTheFirstBlockOfSequentialMode) {
  // With inputs captured from the fp model, block 0 sees the same inputs in both modes (no
  // earlier block is quantized), so its layers must quantize identically when the block is not
  // true-sequential.
  std::string dir = test::temp_dir("pipeline_independent");
  write_calibration_file(dir + "/calib.h5", *model_, calib_, true, true);
  ActivationFile file(dir + "/calib.h5");
  PipelineOptions o;
  o.recipe = parse_recipe("gptq(w4,g32)");
  o.quiet = true;
  o.true_sequential = false;
  std::map<std::string, Mat> seq, ind;
  quantize_sequential(*model_, calib_.windows, o, [&](const LayerResult& r, const QuantizedLayer* q) {
    seq[r.name] = q->effective_weight();
  });
  auto results = quantize_independent(*model_, file, o, [&](const LayerResult& r, const QuantizedLayer* q) {
    ind[r.name] = q->effective_weight();
  });
  EXPECT_EQ(results.size(), seq.size());
  for (int g = 0; g < kNumLinearInputs; ++g)
    for (const auto& name : linear_consumers(0, LinearInput(g)))
      EXPECT_EQ((seq[name] - ind[name]).cwiseAbs().maxCoeff(), 0.0f) << name;
  // Later blocks differ (sequential inputs come from quantized blocks) but stay close.
  const std::string down4 = "model.layers.4.mlp.down_proj";
  EXPECT_LT((seq[down4] - ind[down4]).norm(), 0.5 * seq[down4].norm());
}

}  // namespace
}  // namespace ptq
