// `ptq eval`, `ptq generate` and `ptq calibrate` end to end through the built binary.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "calibration/activation_file.h"
#include "ptq/error.h"
#include "ptq/model.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

using test::run_ptq;

TEST(CliEval, TinyStoriesGoldenPerplexity) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  auto r = run_ptq("eval " + model + " --tokenizer " + tok + " --data " + data +
                   " --data-format tinystories --seq-len 512 --max-samples 20 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["ppl"].get<double>(), 4.1840, 0.0005);
  EXPECT_EQ(j["tokens"].get<int>(), 7372);
  EXPECT_TRUE(j.contains("mean_nll"));
}

TEST(CliEval, WikiTextIdenticalAtOneAndTwoThreads) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", data);
  std::string args = "eval " + model + " --tokenizer " + tok + " --data " + data +
                     " --data-format wikitext2 --seq-len 256 --max-samples 64 --json";
  auto one = run_ptq(args + " --threads 1");
  auto two = run_ptq(args + " --threads 2");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  auto a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(two.out);
  EXPECT_EQ(a["ppl"].get<double>(), b["ppl"].get<double>());
  EXPECT_EQ(a["tokens"].get<int>(), 64 * 255);
  EXPECT_GT(a["ppl"].get<double>(), 1.0);
}

// --tokens-out writes the scored windows so that --tokens reads back the same windows (the
// same perplexity, bit for bit); --logits-out writes window 0's logits as a float32 .npy.
TEST(CliEval, TokensOutAndLogitsOutReplayTheSameWindows) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", data);
  const std::string dir = test::temp_dir("cli_eval_tokens_out");
  auto text = run_ptq("eval " + model + " --data " + data + " --data-format wikitext2 --seq-len 64 --max-samples 3 " +
                      "--json --tokens-out " + dir + "/w.txt --logits-out " + dir + "/l.npy");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  auto ids = run_ptq("eval " + model + " --tokens " + dir + "/w.txt --data-format tinystories --seq-len 64 --json");
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  const auto a = nlohmann::json::parse(text.out), b = nlohmann::json::parse(ids.out);
  EXPECT_EQ(a["ppl"], b["ppl"]);
  EXPECT_EQ(a["tokens"], b["tokens"]);
  std::ifstream in(dir + "/l.npy", std::ios::binary);
  const std::string npy((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(npy.size(), 10u);
  EXPECT_EQ(npy.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header = size_t(uint8_t(npy[8])) | size_t(uint8_t(npy[9])) << 8;
  EXPECT_EQ((10 + header) % 64, 0u);
  const std::string dict = npy.substr(10, header);
  EXPECT_NE(dict.find("'descr': '<f4'"), std::string::npos) << dict;
  EXPECT_NE(dict.find("'shape': (64, 512)"), std::string::npos) << dict;
  EXPECT_EQ(npy.size(), 10 + header + 64 * 512 * sizeof(float));
}

TEST(CliEval, PreTokenizedIdsGiveTheSameNumberAsText) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  std::string dir = test::temp_dir("cli_eval_tokens");
  std::string text = dir + "/text.txt", ids = dir + "/ids.txt";
  std::ofstream(text) << "Once upon a time<|endoftext|>Lily had a red ball.";
  std::ofstream(ids) << "1 403 407 261 378\n";
  auto from_ids = run_ptq("eval " + model + " --tokens " + ids + " --data-format tinystories --json");
  ASSERT_EQ(from_ids.exit_code, 0) << from_ids.err;
  auto from_text = run_ptq("eval " + model + " --tokenizer " + tok + " --data " + text +
                           " --data-format tinystories --max-samples 1 --json");
  ASSERT_EQ(from_text.exit_code, 0) << from_text.err;
  EXPECT_EQ(nlohmann::json::parse(from_ids.out)["ppl"], nlohmann::json::parse(from_text.out)["ppl"]);
}

TEST(CliEval, BadInputsAreOneLineErrors) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  auto r = run_ptq("eval " + model + " --data /nonexistent/data.txt");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("/nonexistent/data.txt"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  std::string dir = test::temp_dir("cli_eval_bad_tokens");
  std::ofstream(dir + "/ids.txt") << "1 2 x3\n";
  r = run_ptq("eval " + model + " --tokens " + dir + "/ids.txt");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("ids.txt:1"), std::string::npos) << r.err;
}

TEST(CliGenerate, GreedyFromPromptContinuesTheStory) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  auto r = run_ptq("generate " + model + " --tokenizer " + tok +
                   " --prompt 'Once upon a time' --max-tokens 20");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.out;
  // Seeded sampling is reproducible.
  std::string sample = "generate " + model + " --tokenizer " + tok +
                       " --prompt 'Once upon a time' --max-tokens 30 --temperature 0.9 --seed 7 --ids";
  auto a = run_ptq(sample), b = run_ptq(sample);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
}

TEST(CliCalibrate, CapturesEveryLinearInputWithTheDocumentedSchema) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  std::string dir = test::temp_dir("cli_calibrate");
  std::string args = "calibrate " + model + " --tokenizer " + tok + " --data " + data +
                     " --data-format tinystories --samples 6 --seq-len 32 --seed 3 --capture all --quiet";
  auto r = run_ptq(args + " --out " + dir + "/a.h5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ActivationFile f(dir + "/a.h5");
  EXPECT_EQ(f.windows().size(), 6u);
  EXPECT_EQ(f.windows()[0].size(), 32u);
  EXPECT_EQ(f.info().seed, 3u);
  EXPECT_EQ(f.info().sampler, "uniform-windows-v1");
  EXPECT_EQ(f.info().model_sha256, Model::open(model).checksum());
  std::string down = f.find_input("model.layers.4.mlp.down_proj");
  EXPECT_EQ(down, "/activations/layer_004/down");
  EXPECT_EQ(f.rows(down), 6 * 32);
  EXPECT_EQ(f.cols(down), 172);
  EXPECT_EQ(f.find_input("model.layers.2.self_attn.k_proj"), "/activations/layer_002/qkv");
  EXPECT_NO_THROW(f.check_fits(Model::open(model).config()));
  // The same seed samples the same windows; another seed does not.
  run_ptq(args + " --out " + dir + "/b.h5");
  run_ptq(args.substr(0, args.find("--seed")) + "--seed 4 --capture none --quiet --out " + dir + "/c.h5");
  EXPECT_EQ(ActivationFile(dir + "/b.h5").windows(), f.windows());
  EXPECT_NE(ActivationFile(dir + "/c.h5").windows(), f.windows());
}

// --windows-out writes the sampled windows as token ids (for other tools to calibrate on), and
// calibrating on those ids with --tokens gives the same windows when each line is one window.
TEST(CliCalibrate, WindowsOutAreTheSampledWindows) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  std::string dir = test::temp_dir("cli_calibrate_windows");
  auto r = run_ptq("calibrate " + model + " --tokenizer " + tok + " --data " + data +
                   " --data-format tinystories --samples 5 --seq-len 24 --seed 7 --quiet --out " + dir +
                   "/a.h5 --windows-out " + dir + "/w.txt");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const TokenSeqs windows = ActivationFile(dir + "/a.h5").windows();
  std::ifstream in(dir + "/w.txt");
  TokenSeqs lines;
  for (std::string line; std::getline(in, line);) {
    lines.emplace_back();
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) lines.back().push_back(id);
  }
  EXPECT_EQ(lines, windows);
}

TEST(CliCalibrate, FileForAnotherModelIsAClearError) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", small);
  PTQ_REQUIRE_SHARED("models/pydoc4M", other);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  std::string dir = test::temp_dir("cli_calibrate_mismatch");
  auto r = run_ptq("calibrate " + small + " --tokenizer " + tok + " --data " + data +
                   " --data-format tinystories --samples 2 --seq-len 16 --capture all --quiet --out " +
                   dir + "/s.h5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ActivationFile f(dir + "/s.h5");
  try {
    f.check_fits(Model::open(other).config());
    FAIL() << "expected a mismatch error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s.h5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ptq
