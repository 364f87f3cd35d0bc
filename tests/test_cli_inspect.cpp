#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "ptq/fs.h"
#include "ptq/model.h"
#include "support/shared_data.h"

namespace fs = std::filesystem;

namespace {

struct RunResult {
  int code = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult run_ptq(const std::string& args, const std::string& tag) {
  const std::string dir = ptq::test::temp_dir("cli_" + tag);
  const std::string cmd = quote(ptq::test::ptq_binary()) + " " + args + " >" + quote(dir + "/out") + " 2>" +
                          quote(dir + "/err");
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(dir + "/out");
  r.err = slurp(dir + "/err");
  return r;
}

// Exit code 2, nothing on stdout, exactly one stderr line naming `file`.
void expect_cli_error(const std::string& args, const std::string& file, const std::string& tag) {
  const RunResult r = run_ptq(args, tag);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.back(), '\n');
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("ptq: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(file), std::string::npos) << r.err;
}

}  // namespace

TEST(CliInspect, JsonForStories260K) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", dir);
  const RunResult r = run_ptq("inspect " + quote(dir) + " --json", "json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(j["num_layers"], 5);
  EXPECT_EQ(j["hidden_size"], 64);
  EXPECT_EQ(j["num_heads"], 8);
  EXPECT_EQ(j["num_kv_heads"], 4);
  EXPECT_EQ(j["vocab_size"], 512);
  EXPECT_EQ(j["tie_word_embeddings"], true);
  // Tied Llama: embedding + per layer (2 norms + q,k,v,o + gate,up,down) + final norm.
  const int64_t h = 64, ffn = 172, vocab = 512, layers = 5, hd = 64 / 8, kv = 4 * hd, q = 8 * hd;
  const int64_t per_layer = 2 * h + q * h + 2 * kv * h + h * q + 3 * ffn * h;
  const int64_t expected = vocab * h + layers * per_layer + h;
  EXPECT_EQ(j["parameter_count"].get<int64_t>(), expected);
  EXPECT_EQ(j["total_bytes"].get<int64_t>(), expected * 4);
  ASSERT_EQ(j["tensors"].size(), size_t(1 + 9 * layers + 1));
  int64_t sum = 0;
  for (const auto& t : j["tensors"]) {
    EXPECT_EQ(t["dtype"], "F32");
    int64_t n = 4;
    for (int64_t d : t["shape"]) n *= d;
    EXPECT_EQ(t["bytes"].get<int64_t>(), n) << t["name"];
    sum += n;
  }
  EXPECT_EQ(sum, expected * 4);
}

TEST(CliInspect, HumanOutputForLlama2cWithTokenizer) {
  PTQ_REQUIRE_SHARED("models/stories260K/stories260K.bin", bin);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.model", tok);
  const RunResult r = run_ptq("inspect " + quote(bin) + " --tokenizer " + quote(tok), "human");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("LlamaForCausalLM"), std::string::npos);
  EXPECT_NE(r.out.find("260032"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.4.self_attn.q_proj.weight"), std::string::npos);
  EXPECT_NE(r.out.find(tok), std::string::npos);
  EXPECT_NE(r.out.find("total bytes: 1040128"), std::string::npos) << r.out;
}

TEST(CliInspectErrors, MissingModel) {
  expect_cli_error("inspect /no/such/model", "/no/such/model", "missing");
}

TEST(CliInspectErrors, MalformedConfig) {
  const std::string dir = ptq::test::temp_dir("cli_bad_config_model");
  ptq::write_file_atomic(dir + "/config.json", std::string("{\"architectures\": [\n\"Llama"));
  expect_cli_error("inspect " + quote(dir) + " --json", dir + "/config.json", "bad_config");
}

TEST(CliInspectErrors, UnsupportedArchitecture) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  const std::string dir = ptq::test::temp_dir("cli_bad_arch_model");
  auto cfg = nlohmann::json::parse(ptq::read_text_file(src + "/config.json"));
  cfg["architectures"] = {"BertModel"};
  ptq::write_file_atomic(dir + "/config.json", cfg.dump(2));
  fs::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  expect_cli_error("inspect " + quote(dir), dir + "/config.json", "bad_arch");
}

TEST(CliInspectErrors, TruncatedSafetensors) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  const std::string dir = ptq::test::temp_dir("cli_trunc_model");
  fs::copy_file(src + "/config.json", dir + "/config.json");
  fs::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  fs::resize_file(dir + "/model.safetensors", 4000);
  expect_cli_error("inspect " + quote(dir), dir + "/model.safetensors", "trunc_st");
}

TEST(CliInspectErrors, MissingTensor) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  const std::string dir = ptq::test::temp_dir("cli_missing_tensor_model");
  auto cfg = nlohmann::json::parse(ptq::read_text_file(src + "/config.json"));
  cfg["num_hidden_layers"] = 6;  // the checkpoint only has layers 0-4
  ptq::write_file_atomic(dir + "/config.json", cfg.dump(2));
  fs::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  expect_cli_error("inspect " + quote(dir) + " --json", dir, "missing_tensor");
}

TEST(CliInspectErrors, Llama2cSizeMismatch) {
  PTQ_REQUIRE_SHARED("models/stories260K/stories260K.bin", bin);
  const std::string dir = ptq::test::temp_dir("cli_l2c_model");
  const std::string path = dir + "/short.bin";
  fs::copy_file(bin, path);
  fs::resize_file(path, 100000);
  expect_cli_error("inspect " + quote(path), path, "l2c");
}

TEST(CliInspectErrors, MissingTokenizer) {
  PTQ_REQUIRE_SHARED("models/stories260K/stories260K.bin", bin);
  expect_cli_error("inspect " + quote(bin) + " --tokenizer /no/such/tok.model", "/no/such/tok.model", "tok");
}
