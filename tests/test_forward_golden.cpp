// stories260K against values from an independent float64 reference forward (../shared/golden).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "ptq/error.h"
#include "ptq/eval.h"
#include "formats/loaded_model.h"
#include "ptq/generate.h"
#include "ptq/parallel.h"
#include "support/h5_read.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

constexpr double kLogitTolerance = 1e-4;  // max abs vs the float64 reference (issue #3)
// Cached decoding vs the whole sequence: fp32 sums over the same terms in another order.
constexpr double kKvCacheTolerance = 1e-4;

class GoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenTest, PromptLogitsMatchReference) {
  PTQ_REQUIRE_SHARED("golden/stories260K.h5", golden);
  PTQ_REQUIRE_SHARED(GetParam(), model_path);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok_path);
  LoadedModel lm = load_model_for_inference(model_path);
  auto tok = load_tokenizer(tok_path);
  std::vector<int32_t> ids = tok->encode("Once upon a time", true);
  auto ref_ids = test::read_h5(golden, "prompt/ids");
  ASSERT_EQ(ids.size(), ref_ids.values.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], int32_t(ref_ids.values[i]));
  Mat logits = lm.forward->logits(ids);
  auto ref = test::read_h5(golden, "prompt/logits");
  ASSERT_EQ(ref.dims[0], uint64_t(logits.rows()));
  ASSERT_EQ(ref.dims[1], uint64_t(logits.cols()));
  double max_abs = 0;
  for (Eigen::Index t = 0; t < logits.rows(); ++t)
    for (Eigen::Index j = 0; j < logits.cols(); ++j)
      max_abs = std::max(max_abs, std::abs(double(logits(t, j)) - ref.values[t * logits.cols() + j]));
  EXPECT_LT(max_abs, kLogitTolerance);
  std::printf("max |logit - reference| = %.3g\n", max_abs);
}

TEST_P(GoldenTest, GreedyGenerationMatchesReference) {
  PTQ_REQUIRE_SHARED("golden/stories260K.h5", golden);
  PTQ_REQUIRE_SHARED(GetParam(), model_path);
  LoadedModel lm = load_model_for_inference(model_path);
  auto ref = test::read_h5(golden, "greedy/ids");
  SamplingOptions o;
  o.max_tokens = int(ref.values.size()) - 1;
  o.stop_at_eos = false;
  std::vector<int32_t> ids = generate(*lm.forward, {1}, o, 2);
  ASSERT_EQ(ids.size(), ref.values.size());
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], int32_t(ref.values[i])) << "at " << i;
}

// Decoding with the KV cache: a prompt, then one token at a time, gives the logits of the whole
// sequence run at once to rounding, and the prompt's logits are logits() of the prompt bit for bit.
TEST_P(GoldenTest, KvCacheStepsMatchTheWholeSequence) {
  PTQ_REQUIRE_SHARED(GetParam(), model_path);
  LoadedModel lm = load_model_for_inference(model_path);
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 285, 260, 1008 % 512, 94, 302, 73, 0, 511, 266};
  const Mat whole = lm.forward->logits(ids);
  KvCache cache(lm.forward->config(), int(ids.size()));
  const size_t prompt = 5;
  Mat first = lm.forward->logits_cached({ids.begin(), ids.begin() + prompt}, cache);
  EXPECT_EQ(cache.length(), int(prompt));
  EXPECT_TRUE(first == lm.forward->logits({ids.begin(), ids.begin() + prompt}));
  double max_abs = (first - whole.topRows(prompt)).cwiseAbs().maxCoeff();
  for (size_t t = prompt; t < ids.size(); ++t) {
    const Mat step = lm.forward->logits_cached({ids[t]}, cache);
    ASSERT_EQ(step.rows(), 1);
    max_abs = std::max(max_abs, double((step.row(0) - whole.row(Eigen::Index(t))).cwiseAbs().maxCoeff()));
  }
  EXPECT_EQ(cache.length(), int(ids.size()));
  EXPECT_LT(max_abs, kKvCacheTolerance);
  EXPECT_THROW(lm.forward->logits_cached({1}, cache), ptq::Error);  // the cache is full
}

TEST_P(GoldenTest, TinyStoriesPerplexityMatchesReference) {
  PTQ_REQUIRE_SHARED("golden/stories260K.h5", golden);
  PTQ_REQUIRE_SHARED(GetParam(), model_path);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok_path);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  LoadedModel lm = load_model_for_inference(model_path);
  auto tok = load_tokenizer(tok_path);
  TokenSeqs docs = tokenize_documents(data, DataFormat::kTinyStories, tok.get(), false);
  TokenSeqs seqs = eval_sequences(docs, DataFormat::kTinyStories, 512, 20);
  EvalResult r = evaluate_perplexity([&](const auto& ids) { return lm.forward->logits(ids); }, seqs);
  EXPECT_EQ(r.tokens, 7372);
  EXPECT_NEAR(r.ppl, 4.1840, 0.0005);
  auto ref_nll = test::read_h5(golden, "tinystories_val20/nll_sum");
  ASSERT_EQ(ref_nll.values.size(), r.seq_nll.size());
  for (size_t i = 0; i < r.seq_nll.size(); ++i) EXPECT_NEAR(r.seq_nll[i], ref_nll.values[i], 1e-2);
}

INSTANTIATE_TEST_SUITE_P(BothLayouts, GoldenTest,
                         ::testing::Values("models/stories260K/hf",
                                           "models/stories260K/stories260K.bin"));

TEST(EvalDeterminism, SameNumberAtOneAndTwoThreads) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model_path);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok_path);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  LoadedModel lm = load_model_for_inference(model_path);
  auto tok = load_tokenizer(tok_path);
  TokenSeqs seqs = eval_sequences(tokenize_documents(data, DataFormat::kTinyStories, tok.get(), false),
                                  DataFormat::kTinyStories, 512, 10);
  auto fn = [&](const auto& ids) { return lm.forward->logits(ids); };
  set_num_threads(1);
  EvalResult one = evaluate_perplexity(fn, seqs);
  set_num_threads(2);
  EvalResult two = evaluate_perplexity(fn, seqs);
  EXPECT_EQ(one.nll_sum, two.nll_sum);  // bit-identical, not merely close
  EXPECT_EQ(one.ppl, two.ppl);
}

}  // namespace
}  // namespace ptq

namespace ptq {
namespace {

// pydoc4M (untied lm_head, head_dim 64, SentencePiece BPE) against ../shared/golden/pydoc4M.json.
TEST(PydocGolden, TextProtocolPerplexityMatchesReference) {
  PTQ_REQUIRE_SHARED("models/pydoc4M", model_path);
  PTQ_REQUIRE_SHARED("data/pydoc/eval.txt", eval_text);
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", wiki);
  PTQ_REQUIRE_SHARED("golden/pydoc4M.json", golden_path);
  std::ifstream in(golden_path);
  nlohmann::json golden = nlohmann::json::parse(in);
  LoadedModel lm = load_model_for_inference(model_path);
  auto tok = load_tokenizer(model_path + "/tokenizer.model");
  auto fn = [&](const auto& ids) { return lm.forward->logits(ids); };
  struct Case {
    std::string path, key;
    int max_samples;
  };
  for (const Case& c : {Case{eval_text, "pydoc_eval", 0}, Case{wiki, "wikitext2_first64", 64}}) {
    TokenSeqs seqs = eval_sequences(tokenize_documents(c.path, DataFormat::kText, tok.get(), false),
                                    DataFormat::kText, 256, c.max_samples);
    EvalResult r = evaluate_perplexity(fn, seqs);
    EXPECT_EQ(r.tokens, golden[c.key]["tokens_scored"].get<int64_t>()) << c.key;
    EXPECT_NEAR(r.ppl / golden[c.key]["ppl"].get<double>(), 1.0, 1e-5) << c.key;
  }
}

}  // namespace
}  // namespace ptq
