#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numbers>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/forward.h"
#include "ptq/fs.h"
#include "ptq/model.h"
#include "support/shared_data.h"

namespace fs = std::filesystem;

namespace {

// Runs Model::open expecting a ptq::Error whose message contains every fragment.
void expect_open_error(const std::string& path, std::initializer_list<std::string> fragments) {
  try {
    ptq::Model::open(path);
    FAIL() << "expected ptq::Error opening " << path;
  } catch (const ptq::Error& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// A copy of an HF directory whose config.json is replaced and/or whose tensors are filtered.
std::string hf_copy(const std::string& src, const std::string& name, const std::string& config_text,
                    const std::string& drop_tensor = "") {
  const std::string dir = ptq::test::temp_dir(name);
  ptq::write_file_atomic(dir + "/config.json", config_text);
  ptq::SafetensorsFile in(src + "/model.safetensors");
  ptq::SafetensorsWriter out;
  for (const auto& [n, info] : in.tensors()) {
    if (n == drop_tensor) continue;
    const uint8_t* p = in.data(n);
    out.add(n, info.dtype, info.shape, std::vector<uint8_t>(p, p + info.nbytes));
  }
  out.write(dir + "/model.safetensors");
  return dir;
}

}  // namespace

TEST(ModelIO, Stories260KHfAndLlama2cAgree) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", hf_dir);
  PTQ_REQUIRE_SHARED("models/stories260K/stories260K.bin", bin);
  const ptq::Model hf = ptq::Model::open(hf_dir);
  const ptq::Model l2c = ptq::Model::open(bin);
  EXPECT_EQ(hf.config(), l2c.config());
  EXPECT_EQ(l2c.config().num_layers, 5);
  EXPECT_EQ(l2c.config().num_kv_heads, 4);
  EXPECT_TRUE(l2c.config().tie_word_embeddings);
  ASSERT_EQ(hf.tensors().names(), l2c.tensors().names());
  for (const auto& name : hf.tensors().names()) {
    const ptq::Mat a = hf.weight(name), b = l2c.weight(name);
    ASSERT_EQ(a.rows(), b.rows()) << name;
    ASSERT_EQ(a.cols(), b.cols()) << name;
    int64_t differing = 0;  // a loop, not Eigen's AVX-512 maxCoeff, which GCC 12 -Werror rejects
    for (int64_t i = 0; i < a.size(); ++i) differing += a.data()[i] != b.data()[i];
    EXPECT_EQ(differing, 0) << name;
    EXPECT_EQ(hf.tensors().find(name)->shape, l2c.tensors().find(name)->shape) << name;
  }
  EXPECT_EQ(hf.parameter_count(), l2c.parameter_count());
  EXPECT_EQ(l2c.tensors().load_raw("model.layers.0.self_attn.q_proj.weight"),
            hf.tensors().load_raw("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_EQ(hf.checksum().size(), 64u);
  EXPECT_NE(hf.checksum(), l2c.checksum());
  EXPECT_EQ(hf.checksum(), ptq::Model::open(hf_dir).checksum());
}

TEST(ModelIO, ConfigJsonRoundTrips) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf/config.json", cfg_path);
  const ptq::ModelConfig c = ptq::ModelConfig::from_file(cfg_path);
  EXPECT_EQ(ptq::ModelConfig::from_json(c.to_json(), "roundtrip"), c);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
}

TEST(ModelIO, ConfigDefaultsAndQwenBias) {
  nlohmann::json j = {{"architectures", {"Qwen2ForCausalLM"}}, {"hidden_size", 64}, {"intermediate_size", 128},
                      {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"vocab_size", 100}};
  const ptq::ModelConfig c = ptq::ModelConfig::from_json(j, "q.json");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.model_type, "qwen2");
  j["num_key_value_heads"] = 3;
  EXPECT_THROW(ptq::ModelConfig::from_json(j, "q.json"), ptq::Error);
  j["num_key_value_heads"] = 2;
  j["hidden_size"] = -64;
  EXPECT_THROW(ptq::ModelConfig::from_json(j, "q.json"), ptq::Error);
  j.erase("hidden_size");
  try {
    ptq::ModelConfig::from_json(j, "q.json");
    FAIL();
  } catch (const ptq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos);
  }
}

// transformers 5 keeps rope_theta inside rope_parameters; a scaled RoPE type must not be computed
// as plain RoPE, and a configuration ptq cannot compute is refused by name.
TEST(ModelIO, RopeParametersAndActivation) {
  const nlohmann::json base = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64},
                               {"intermediate_size", 128}, {"num_hidden_layers", 2},
                               {"num_attention_heads", 4}, {"vocab_size", 100}};
  EXPECT_EQ(ptq::ModelConfig::from_json(base, "c.json").rope_theta, 10000.0);
  nlohmann::json j = base;
  j["rope_parameters"] = {{"rope_theta", 100000.0}, {"rope_type", "default"}};
  EXPECT_EQ(ptq::ModelConfig::from_json(j, "c.json").rope_theta, 100000.0);
  j["rope_theta"] = 100000.0;
  EXPECT_EQ(ptq::ModelConfig::from_json(j, "c.json").rope_theta, 100000.0);
  j["rope_theta"] = 500000.0;
  EXPECT_THROW(ptq::ModelConfig::from_json(j, "c.json"), ptq::Error);
  j = base;
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(ptq::ModelConfig::from_json(j, "c.json").rope_theta, 10000.0);
  // Scaled types ptq computes: read from either field, in either spelling of the type key.
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const char* type_key = std::string(key) == "rope_scaling" ? "type" : "rope_type";
    j = base;
    j[key] = {{type_key, "linear"}, {"factor", 4.0}};
    ptq::ModelConfig c = ptq::ModelConfig::from_json(j, "c.json");
    EXPECT_EQ(c.rope_scaling.type, "linear");
    EXPECT_EQ(c.rope_scaling.factor, 4.0);
    j[key] = {{type_key, "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
              {"original_max_position_embeddings", 8192}, {"rope_theta", 500000.0}};
    c = ptq::ModelConfig::from_json(j, "c.json");
    EXPECT_EQ(c.rope_scaling.type, "llama3");
    EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
    EXPECT_EQ(c.rope_theta, 500000.0);
    // Written back (fake-quant outputs of GGUF models) and read again: the same configuration.
    EXPECT_EQ(ptq::ModelConfig::from_json(c.to_json(), "c.json"), c);
    j[key] = {{type_key, "dynamic"}, {"factor", 2.0}};
    EXPECT_EQ(ptq::ModelConfig::from_json(j, "c.json").rope_scaling.type, "dynamic");
    // A field the type needs, missing: an error naming the field, never a silent default.
    j[key] = {{type_key, "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}};
    try {
      ptq::ModelConfig::from_json(j, "c.json");
      FAIL() << key;
    } catch (const ptq::Error& e) {
      EXPECT_NE(std::string(e.what()).find("original_max_position_embeddings"), std::string::npos) << e.what();
    }
    j[key] = {{type_key, "linear"}};
    EXPECT_THROW(ptq::ModelConfig::from_json(j, "c.json"), ptq::Error) << key;
    j[key] = {{type_key, "linear"}, {"factor", -2.0}};
    EXPECT_THROW(ptq::ModelConfig::from_json(j, "c.json"), ptq::Error) << key;
  }
  j = base;
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  EXPECT_THROW(ptq::ModelConfig::from_json(j, "c.json"), ptq::Error);
  j["rope_parameters"]["factor"] = 4.0;
  EXPECT_EQ(ptq::ModelConfig::from_json(j, "c.json").rope_scaling.factor, 4.0);
  for (const char* type : {"yarn", "longrope", "ntk"}) {
    for (const char* key : {"rope_scaling", "rope_parameters"}) {
      j = base;
      j[key] = {{std::string(key) == "rope_scaling" ? "type" : "rope_type", type}, {"factor", 8.0}};
      try {
        ptq::ModelConfig::from_json(j, "c.json");
        FAIL() << key << " " << type;
      } catch (const ptq::Error& e) {
        EXPECT_NE(std::string(e.what()).find(type), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("c.json"), std::string::npos) << e.what();
      }
    }
  }
  j = base;
  j["hidden_act"] = "gelu";
  EXPECT_THROW(ptq::ModelConfig::from_json(j, "c.json"), ptq::Error);
  j["hidden_act"] = "silu";
  EXPECT_NO_THROW(ptq::ModelConfig::from_json(j, "c.json"));
}

TEST(ModelIO, Pydoc4MOpensUntied) {
  PTQ_REQUIRE_SHARED("models/pydoc4M", dir);
  const ptq::Model m = ptq::Model::open(dir);
  EXPECT_FALSE(m.config().tie_word_embeddings);
  ASSERT_NE(m.tensors().find("lm_head.weight"), nullptr);
  EXPECT_EQ(m.weight("lm_head.weight").rows(), m.config().vocab_size);
  EXPECT_EQ(m.weight("model.norm.weight").cols(), m.config().hidden_size);
}

TEST(ModelIOErrors, MissingPath) {
  expect_open_error("/no/such/model_dir", {"/no/such/model_dir", "cannot open"});
}

TEST(ModelIOErrors, MissingTensor) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  const std::string dir = hf_copy(src, "model_missing_tensor", ptq::read_text_file(src + "/config.json"),
                                  "model.layers.3.mlp.up_proj.weight");
  expect_open_error(dir, {dir + ": missing tensor 'model.layers.3.mlp.up_proj.weight' needed by LlamaForCausalLM"});
}

TEST(ModelIOErrors, WrongShape) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  auto cfg = nlohmann::json::parse(ptq::read_text_file(src + "/config.json"));
  cfg["intermediate_size"] = 170;
  const std::string dir = hf_copy(src, "model_wrong_shape", cfg.dump());
  expect_open_error(dir, {"model.layers.0.mlp.gate_proj.weight' has shape [172, 64], expected [170, 64]"});
}

TEST(ModelIOErrors, UnsupportedArchitecture) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  auto cfg = nlohmann::json::parse(ptq::read_text_file(src + "/config.json"));
  cfg["architectures"] = {"GPT2LMHeadModel"};
  const std::string dir = hf_copy(src, "model_bad_arch", cfg.dump());
  expect_open_error(dir, {"unsupported architecture 'GPT2LMHeadModel'", dir + "/config.json",
                          "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"});
}

TEST(ModelIOErrors, MalformedConfig) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  const std::string dir = hf_copy(src, "model_bad_config", "{\"architectures\": [\"LlamaForCausalLM\",\n");
  expect_open_error(dir, {dir + "/config.json", "malformed JSON"});
}

TEST(ModelIOErrors, MissingConfig) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", src);
  const std::string dir = hf_copy(src, "model_no_config", "{}");
  fs::remove(dir + "/config.json");
  expect_open_error(dir, {dir + "/config.json"});
}

TEST(ModelIOErrors, Llama2cSizeMismatch) {
  PTQ_REQUIRE_SHARED("models/stories260K/stories260K.bin", bin);
  const std::string dir = ptq::test::temp_dir("model_l2c_trunc");
  const std::string path = dir + "/stories260K.bin";
  fs::copy_file(bin, path);
  fs::resize_file(path, fs::file_size(bin) - 4);
  expect_open_error(path, {path + ": llama2.c header (dim=64, hidden_dim=172, n_layers=5, n_heads=8, "
                                  "n_kv_heads=4, vocab_size=512, seq_len=512) implies 1056540 bytes but "
                                  "the file has 1056536"});
  fs::resize_file(path, 10);
  expect_open_error(path, {path, "truncated"});
}

// The scaled inverse frequencies, worked by hand for head_dim 8, θ = 10⁴: inv = 1, 0.1, 0.01,
// 0.001 with wavelengths 2π/inv = 6.28, 62.8, 628, 6283. llama3 with original context 1000,
// low/high factors 1/4 (wavelength bounds 1000 and 250), factor 8: the first two are kept,
// 628 is interpolated with smooth = (1000/628.3 − 1)/3, 6283 is divided by 8.
TEST(Rope, ScaledInverseFrequencies) {
  const std::vector<double> plain = ptq::rope_inverse_frequencies(8, 1e4, {});
  ASSERT_EQ(plain.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(plain[size_t(i)], std::pow(10.0, -i), 1e-15);
  ptq::RopeScaling s;
  s.type = "linear";
  s.factor = 4;
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(ptq::rope_inverse_frequencies(8, 1e4, s)[size_t(i)], plain[size_t(i)] / 4, 1e-15);
  s.type = "dynamic";
  EXPECT_EQ(ptq::rope_inverse_frequencies(8, 1e4, s), plain);
  s = {"llama3", 8.0, 1.0, 4.0, 1000};
  const std::vector<double> l3 = ptq::rope_inverse_frequencies(8, 1e4, s);
  EXPECT_EQ(l3[0], plain[0]);
  EXPECT_EQ(l3[1], plain[1]);
  const double smooth = (1000 / (2 * std::numbers::pi / 0.01) - 1) / 3;
  EXPECT_NEAR(l3[2], (1 - smooth) * 0.01 / 8 + smooth * 0.01, 1e-15);
  EXPECT_NEAR(l3[2], 0.0029753, 1e-7);
  EXPECT_NEAR(l3[3], 0.001 / 8, 1e-15);
}

// Dynamic NTK scaling only changes the frequencies past the original context, which ptq does not
// compute: a longer sequence is refused, naming the reason.
TEST(Rope, DynamicScalingRefusesPositionsPastTheOriginalContext) {
  ptq::ModelConfig cfg;
  cfg.head_dim = 8;
  cfg.max_position_embeddings = 64;
  cfg.rope_scaling = {"dynamic", 2.0, 1.0, 4.0, 16};
  const ptq::RopeTable rope(cfg);
  ptq::Mat x = ptq::Mat::Ones(16, 8);
  EXPECT_NO_THROW(rope.apply(x, 1));
  ptq::Mat longer = ptq::Mat::Ones(17, 8);
  try {
    rope.apply(longer, 1);
    FAIL();
  } catch (const ptq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("dynamic NTK"), std::string::npos) << e.what();
  }
}
