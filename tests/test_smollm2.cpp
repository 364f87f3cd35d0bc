// SmolLM2-135M-Instruct (a real 135M-parameter Llama, as its authors' Q4_1 GGUF) against
// ../shared/golden/smollm2-135m*.json: llama.cpp's token ids, the float64 reference forward's
// prompt logits, and its WikiText-2 perplexity under the no-BOS GPTQ protocol. One model is
// loaded for the whole suite (the 40-window evaluation is the suite's main cost).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "calibration/bpe_tokenizer.h"
#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "formats/checkpoint_writer.h"
#include "formats/gguf_file.h"
#include "ptq/eval.h"
#include "ptq/stages.h"
#include "ptq/fs.h"
#include "formats/loaded_model.h"
#include "ptq/generate.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

using json = nlohmann::json;

constexpr const char* kModel = "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf";
// Max |logit - float64 reference| over the golden top-10 entries and the logsumexp of every
// prompt position (|logit| <= 30); ptq's forward is fp32 throughout (measured value in
// docs/smollm2.md). The golden file states llama.cpp's own F32 forward agrees with the reference
// to 4.0e-5 (max_abs_diff_vs_llamacpp), so this bound asks for llama.cpp's closeness, doubled.
constexpr double kLogitTolerance = 1e-4;
constexpr double kPerplexityRelTolerance = 1e-4;  // the bound

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

class SmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = test::shared_path(kModel);
    if (path.empty()) return;
    model_ = std::make_unique<LoadedModel>(load_model_for_inference(path));
    tokenizer_ = open_model_tokenizer(model_->model, "");
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    model_.reset();
  }
  static std::unique_ptr<LoadedModel> model_;
  static std::unique_ptr<Tokenizer> tokenizer_;
};
std::unique_ptr<LoadedModel> SmolLM2::model_;
std::unique_ptr<Tokenizer> SmolLM2::tokenizer_;

#define REQUIRE_MODEL()                                                                              \
  PTQ_REQUIRE_SHARED(kModel, model_path_);                                                           \
  ASSERT_TRUE(model_ && tokenizer_)

TEST_F(SmolLM2, ConfigComesFromTheGgufHparams) {
  REQUIRE_MODEL();
  PTQ_REQUIRE_SHARED("golden/smollm2-135m.json", golden_path);
  const json g = read_json(golden_path)["model"];
  const ModelConfig& c = model_->model.config();
  EXPECT_EQ(c.hidden_size, g["hidden"].get<int>());
  EXPECT_EQ(c.num_layers, g["layers"].get<int>());
  EXPECT_EQ(c.num_heads, g["heads"].get<int>());
  EXPECT_EQ(c.num_kv_heads, g["kv_heads"].get<int>());
  EXPECT_EQ(c.head_dim, g["head_dim"].get<int>());
  EXPECT_EQ(c.intermediate_size, g["ffn"].get<int>());
  EXPECT_EQ(c.vocab_size, g["vocab"].get<int>());
  EXPECT_EQ(c.max_position_embeddings, g["context_length"].get<int>());
  EXPECT_EQ(c.rope_theta, g["rope_theta"].get<double>());
  EXPECT_NEAR(c.rms_norm_eps, g["rms_eps"].get<double>(), 1e-12);  // stored as F32
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(model_->model.parameter_count(), g["params"].get<int64_t>());
  EXPECT_EQ(tokenizer_->kind(), "bpe");
  EXPECT_FALSE(tokenizer_->adds_bos());
  EXPECT_EQ(tokenizer_->bos_id(), 1);
  EXPECT_EQ(tokenizer_->eos_id(), 2);
}

TEST_F(SmolLM2, TokenizerMatchesLlamaCppOnEveryGoldenText) {
  REQUIRE_MODEL();
  PTQ_REQUIRE_SHARED("golden/smollm2-135m-tokenizer.json", golden_path);
  const json g = read_json(golden_path);
  const auto& bpe = dynamic_cast<const BpeTokenizer&>(*tokenizer_);
  ASSERT_GE(g["vectors"].size(), 30u);
  for (const auto& v : g["vectors"]) {
    const std::string text = v["text"];
    const auto ids = v["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer_->encode(text, tokenizer_->adds_bos()), ids) << text;
    const auto special = v.contains("ids_parse_special") ? v["ids_parse_special"].get<std::vector<int32_t>>() : ids;
    EXPECT_EQ(tokenizer_->encode_with_special(text, false), special) << text;
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(bpe.vocabulary().tokens[size_t(id)]);
    EXPECT_EQ(pieces, v["pieces"].get<std::vector<std::string>>()) << text;
    EXPECT_EQ(tokenizer_->decode(ids), text);
  }
}

TEST_F(SmolLM2, WikiText2TokenizesLikeLlamaCpp) {
  REQUIRE_MODEL();
  PTQ_REQUIRE_SHARED("golden/smollm2-135m-wt2-first40-ids.json", ids_path);
  PTQ_REQUIRE_SHARED("golden/smollm2-135m.json", golden_path);
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", wiki);
  const json golden = read_json(golden_path);
  const auto ref = read_json(ids_path)["ids"].get<std::vector<int32_t>>();
  const TokenSeqs docs = tokenize_documents(wiki, DataFormat::kWikiText2, tokenizer_.get(), false);
  ASSERT_EQ(docs.size(), 1u);
  const std::vector<int32_t>& ids = docs[0];
  EXPECT_EQ(int64_t(ids.size()), golden["tokenizer_summary"]["wikitext2_test_tokens"].get<int64_t>());
  ASSERT_GE(ids.size(), ref.size());
  EXPECT_TRUE(std::equal(ref.begin(), ref.end(), ids.begin())) << "first 40 windows differ from llama.cpp's";
  EXPECT_EQ(int64_t(eval_sequences(docs, DataFormat::kWikiText2, 512, 0).size()),
            golden["tokenizer_summary"]["wikitext2_test_windows_512"].get<int64_t>());
}

// What a checkpoint written from the GGUF carries: tokenizer.json + tokenizer_config.json made from
// the metadata, read back by ptq's own opener, must tokenize exactly as the GGUF does.
TEST_F(SmolLM2, TokenizerJsonMadeFromTheGgufTokenizesTheSame) {
  REQUIRE_MODEL();
  PTQ_REQUIRE_SHARED("golden/smollm2-135m-tokenizer.json", golden_path);
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", wiki);
  const std::string dir = test::temp_dir("smollm2_tokenizer_json");
  for (const auto& f : tokenizer_output_files(model_->model, "")) write_file_atomic(dir + "/" + f.name, f.text);
  ASSERT_EQ(find_model_tokenizer(dir, ""), dir + "/tokenizer.json");
  const auto back = load_tokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(back->adds_bos(), tokenizer_->adds_bos());
  EXPECT_EQ(back->bos_id(), tokenizer_->bos_id());
  EXPECT_EQ(back->eos_id(), tokenizer_->eos_id());
  EXPECT_EQ(back->vocab_size(), tokenizer_->vocab_size());
  const json golden = read_json(golden_path);
  for (const auto& v : golden["vectors"]) {
    const std::string text = v["text"];
    EXPECT_EQ(back->encode(text, false), v["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(back->encode_with_special(text, false), tokenizer_->encode_with_special(text, false)) << text;
  }
  EXPECT_EQ(tokenize_documents(wiki, DataFormat::kWikiText2, back.get(), false),
            tokenize_documents(wiki, DataFormat::kWikiText2, tokenizer_.get(), false));
}

TEST_F(SmolLM2, PromptLogitsMatchTheFloat64Reference) {
  REQUIRE_MODEL();
  PTQ_REQUIRE_SHARED("golden/smollm2-135m.json", golden_path);
  const json g = read_json(golden_path)["prompt_logits"];
  const std::vector<int32_t> ids = tokenizer_->encode(g["text"].get<std::string>(), tokenizer_->adds_bos());
  ASSERT_EQ(ids, g["ids"].get<std::vector<int32_t>>());
  const Mat logits = model_->forward->logits(ids);
  ASSERT_EQ(logits.rows(), Eigen::Index(ids.size()));
  double max_abs = 0;
  for (Eigen::Index t = 0; t < logits.rows(); ++t) {
    const auto& top = g["numpy_f64_top10"][size_t(t)];
    Eigen::Index best = 0;
    logits.row(t).maxCoeff(&best);
    EXPECT_EQ(best, top[0][0].get<Eigen::Index>()) << "position " << t;
    for (const auto& entry : top)
      max_abs = std::max(max_abs, std::abs(double(logits(t, entry[0].get<Eigen::Index>())) - entry[1].get<double>()));
    double mx = logits.row(t).maxCoeff(), sum = 0;
    for (Eigen::Index j = 0; j < logits.cols(); ++j) sum += std::exp(double(logits(t, j)) - mx);
    max_abs = std::max(max_abs, std::abs(mx + std::log(sum) - g["numpy_f64_logsumexp"][size_t(t)].get<double>()));
  }
  std::printf("max |logit - float64 reference| = %.3g\n", max_abs);
  EXPECT_LT(max_abs, kLogitTolerance);
}

TEST_F(SmolLM2, WikiText2PerplexityOfFortyWindowsMatchesTheReference) {
  REQUIRE_MODEL();
  PTQ_REQUIRE_SHARED("golden/smollm2-135m.json", golden_path);
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", wiki);
  const json g = read_json(golden_path)["gptq_wikitext2_first40"];
  const TokenSeqs docs = tokenize_documents(wiki, DataFormat::kWikiText2, tokenizer_.get(), false);
  const TokenSeqs seqs = eval_sequences(docs, DataFormat::kWikiText2, g["seq_len"].get<int>(), 40);
  ASSERT_EQ(seqs.size(), 40u);
  // The same logits also give llama-perplexity's protocol: only the second half of each window is
  // scored (logits at 256..510 predict tokens 257..511; its chunks are these windows).
  std::vector<double> half_nll(seqs.size(), 0.0);
  const EvalResult r = evaluate_perplexity(
      [&](const std::vector<int32_t>& ids) {
        Mat logits = model_->forward->logits(ids);
        double nll = 0;
        for (Eigen::Index t = 256; t + 1 < logits.rows(); ++t) {
          const double mx = logits.row(t).maxCoeff();
          double sum = 0;
          for (Eigen::Index j = 0; j < logits.cols(); ++j) sum += std::exp(double(logits(t, j)) - mx);
          nll += mx + std::log(sum) - double(logits(t, ids[size_t(t) + 1]));
        }
        half_nll[size_t(&ids - seqs.data())] = nll;
        return logits;
      },
      seqs);
  const json& ref = g["numpy_f64_dequant"];
  EXPECT_EQ(r.tokens, ref["tokens_scored"].get<int64_t>());
  std::printf("ppl %.6f (reference %.6f)\n", r.ppl, ref["ppl"].get<double>());
  EXPECT_NEAR(r.ppl / ref["ppl"].get<double>(), 1.0, kPerplexityRelTolerance);
  ASSERT_EQ(r.seq_nll.size(), ref["nll_sums"].size());
  for (size_t w = 0; w < r.seq_nll.size(); ++w)
    EXPECT_NEAR(r.seq_nll[w] / ref["nll_sums"][w].get<double>(), 1.0, kPerplexityRelTolerance) << "window " << w;
  const json lcp = read_json(golden_path)["llamacpp_perplexity"]["numpy_f64_same_protocol"];
  double half = 0;
  for (double v : half_nll) half += v;
  const double half_tokens = 255.0 * double(seqs.size());
  EXPECT_EQ(int64_t(half_tokens), lcp["tokens_scored"].get<int64_t>());
  std::printf("llama-perplexity protocol: ppl %.6f (reference %.6f)\n", std::exp(half / half_tokens),
              lcp["ppl"].get<double>());
  EXPECT_NEAR(std::exp(half / half_tokens) / lcp["ppl"].get<double>(), 1.0, kPerplexityRelTolerance);
}

// The chain through the CLI on the GGUF: compress to the packed gptq layout, then evaluate and
// generate from the output, which must carry a tokenizer ptq can open (tokenizer.json made from
// the GGUF metadata). RTN keeps it quick; GPTQ/AWQ on SmolLM2 are measured in docs/smollm2.md.
TEST_F(SmolLM2, PackedCheckpointFromTheGgufEvaluatesAndGenerates) {
  REQUIRE_MODEL();
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", wiki);
  PTQ_REQUIRE_SHARED("golden/smollm2-135m.json", golden_path);
  const std::string out = test::temp_dir("smollm2_chain") + "/rtn-w4g64";
  const auto compress = test::run_ptq("compress " + model_path_ +
                                      " --method rtn --bits 4 --group-size 64 --format gptq --quiet --out " + out);
  ASSERT_EQ(compress.exit_code, 0) << compress.err;
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer_config.json"));
  const auto eval = test::run_ptq("eval " + out + " --data " + wiki +
                                  " --data-format wikitext2 --seq-len 512 --max-samples 1 --json --quiet");
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const json r = json::parse(eval.out);
  EXPECT_EQ(r["tokens"].get<int64_t>(), 511);
  EXPECT_FALSE(r["add_bos"].get<bool>());
  // The same window through the fp model: 4-bit g64 RTN costs something, but not much.
  const double fp_nll = read_json(golden_path)["gptq_wikitext2_first40"]["numpy_f64_dequant"]["nll_sums"][0].get<double>() / 511;
  EXPECT_GT(r["mean_nll"].get<double>(), fp_nll);
  EXPECT_LT(r["mean_nll"].get<double>(), fp_nll + 0.5);
  const auto gen = test::run_ptq("generate " + out + " --prompt 'The capital of France is' --max-tokens 4");
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_EQ(gen.out.rfind("The capital of France is", 0), 0u) << gen.out;
}

// GGUF export from the GGUF (formats/gguf_format.cpp): the source's Q8_0 embedding passes through
// byte for byte, the tokenizer is the source's (byte-level BPE, its pre-tokenizer, merges, no BOS,
// chat template), and the q/k projections of this GQA model (9 heads, 3 kv heads) read back as
// the RTN layers fitted for the additive Q4_1 grid, permutation undone.
TEST_F(SmolLM2, GgufExportKeepsTheSourceBlocksAndTokenizer) {
  REQUIRE_MODEL();
  const std::string out = test::temp_dir("smollm2_gguf") + "/q4_1";
  const auto compress = test::run_ptq("compress " + model_path_ + " --recipe 'rtn(w4,g64)' --format 'gguf(q4_1)' --quiet --out " + out);
  ASSERT_EQ(compress.exit_code, 0) << compress.err;
  const GgufFile src(model_path_), dst(out + "/model.gguf");
  const GgufTensorInfo* a = src.find_tensor("token_embd.weight");
  const GgufTensorInfo* b = dst.find_tensor("token_embd.weight");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(b->type, GgmlType::Q8_0);
  ASSERT_EQ(a->nbytes, b->nbytes);
  EXPECT_EQ(std::memcmp(src.tensor_data(*a), dst.tensor_data(*b), a->nbytes), 0);
  EXPECT_EQ(dst.find_tensor("output.weight"), nullptr);  // still tied
  for (const char* key : {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template"})
    EXPECT_EQ(dst.required_string(key), src.required_string(key)) << key;
  EXPECT_EQ(dst.optional_bool("tokenizer.ggml.add_bos_token"), src.optional_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(dst.optional_array("tokenizer.ggml.merges", true)->count, src.optional_array("tokenizer.ggml.merges", true)->count);
  EXPECT_EQ(dst.optional_array("tokenizer.ggml.tokens", true)->strings, src.optional_array("tokenizer.ggml.tokens", true)->strings);
  const Model exported = Model::open(out + "/model.gguf");
  const auto q = make_quantizer(parse_spec("rtn(w4,g64)"), format_traits("gguf(q4_1)").constraints);
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.29.self_attn.k_proj.weight",
                           "model.layers.7.mlp.down_proj.weight"}) {
    const Mat want = q->quantize(model_->model.weight(name), nullptr, nullptr).effective_weight();
    const Mat got = exported.weight(name);
    ASSERT_EQ(got.rows(), want.rows());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * size_t(got.size())), 0) << name;
  }
}

// llama.cpp's Q4_K_M mixture on a model whose 576-wide layers K-quants cannot hold: down_proj
// (1536 columns) is Q6_K on llama.cpp's use_more_bits layers and Q4_K elsewhere; the 576-wide
// layers fall back as llama.cpp's do (Q4_K → Q5_0, attn_v's Q6_K → Q8_0), each with a message,
// and every layer reads back as RTN on its type's grid.
TEST_F(SmolLM2, GgufQ4KMMixtureAndFallbacks) {
  REQUIRE_MODEL();
  const std::string out = test::temp_dir("smollm2_gguf") + "/q4_k_m";
  const auto compress = test::run_ptq("compress " + model_path_ +
                                      " --recipe 'rtn(w4,g32)' --format 'gguf(q4_k_m)' --out " + out + " --overwrite");
  ASSERT_EQ(compress.exit_code, 0) << compress.err;
  EXPECT_NE(compress.err.find("model.layers.0.self_attn.q_proj: Q4_K stores super-blocks of 256 input columns and "
                              "this layer has 576: Q5_0"),
            std::string::npos)
      << compress.err;
  EXPECT_NE(compress.err.find("model.layers.0.self_attn.v_proj: Q6_K"), std::string::npos) << compress.err;
  const GgufFile dst(out + "/model.gguf");
  const int n = 30;
  for (int i = 0; i < n; ++i) {
    const bool more_bits = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    const std::string blk = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(dst.find_tensor(blk + "ffn_down.weight")->type, more_bits ? GgmlType::Q6_K : GgmlType::Q4_K) << i;
    EXPECT_EQ(dst.find_tensor(blk + "attn_v.weight")->type, more_bits ? GgmlType::Q8_0 : GgmlType::Q5_0) << i;
    for (const char* t : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"})
      EXPECT_EQ(dst.find_tensor(blk + t + ".weight")->type, GgmlType::Q5_0) << blk << t;
  }
  const Model exported = Model::open(out + "/model.gguf");
  const GridConstraints& k = format_traits("gguf(q4_k_m)").constraints;
  for (const auto& [name, spec] : {std::pair{"model.layers.3.mlp.down_proj", "rtn(w4,g32)"},
                                   std::pair{"model.layers.5.mlp.down_proj", "rtn(w6,g16,sym)"},
                                   std::pair{"model.layers.0.self_attn.v_proj", "rtn(w8,g32,sym)"},
                                   std::pair{"model.layers.4.self_attn.k_proj", "rtn(w5,g32,sym)"}}) {
    const std::string weight = std::string(name) + ".weight";
    const Mat want = make_quantizer(parse_spec(spec), k)->quantize(model_->model.weight(weight), nullptr, nullptr).effective_weight();
    const Mat got = exported.weight(weight);
    ASSERT_EQ(got.rows(), want.rows());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * size_t(got.size())), 0) << name;
  }
}

}  // namespace
}  // namespace ptq
