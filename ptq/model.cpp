#include "ptq/model.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "formats/tensor_sources.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/sha256.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ptq {
namespace {

struct ArchInfo {
  const char* architecture;
  const char* model_type;
  bool attention_bias;
};
constexpr ArchInfo kArchs[] = {{"LlamaForCausalLM", "llama", false},
                               {"MistralForCausalLM", "mistral", false},
                               {"Qwen2ForCausalLM", "qwen2", true}};

std::string supported_list() {
  std::string s;
  for (const auto& a : kArchs) {
    if (!s.empty()) s += ", ";
    s += a.architecture;
  }
  return s;
}

const ArchInfo& find_arch(const json& j, const std::string& path) {
  auto it = j.find("architectures");
  if (it == j.end() || !it->is_array() || it->empty() || !(*it)[0].is_string())
    throw Error(path + ": expected 'architectures' to be a non-empty list of strings (supported: " +
                supported_list() + ")");
  const std::string arch = (*it)[0].get<std::string>();
  for (const auto& a : kArchs)
    if (arch == a.architecture) return a;
  throw Error("unsupported architecture '" + arch + "' in " + path + " (supported: " + supported_list() + ")");
}

int required_int(const json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end()) throw Error(path + ": missing required field '" + key + "' (a positive integer)");
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > INT32_MAX)
    throw Error(path + ": field '" + key + "' must be a positive integer, found " + it->dump());
  return it->get<int>();
}

int optional_int(const json& j, const char* key, int fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > INT32_MAX)
    throw Error(path + ": field '" + key + "' must be a positive integer, found " + it->dump());
  return it->get<int>();
}

double optional_positive(const json& j, const char* key, double fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number() || it->get<double>() <= 0)
    throw Error(path + ": field '" + key + "' must be a positive number, found " + it->dump());
  return it->get<double>();
}

bool optional_bool(const json& j, const char* key, bool fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(path + ": field '" + key + "' must be true or false, found " + it->dump());
  return it->get<bool>();
}

// Token ids may be an int or (Llama 3 style) a list whose first entry is the primary one.
int token_id(const json& j, const char* key, int fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  const json& v = it->is_array() && !it->empty() ? (*it)[0] : *it;
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    throw Error(path + ": field '" + key + "' must be a non-negative integer token id, found " + it->dump());
  return v.get<int>();
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& path) {
  if (!j.is_object()) throw Error(path + ": expected a JSON object, found " + std::string(j.type_name()));
  const ArchInfo& arch = find_arch(j, path);
  ModelConfig c;
  c.architecture = arch.architecture;
  c.model_type = j.value("model_type", std::string(arch.model_type));
  c.hidden_size = required_int(j, "hidden_size", path);
  c.intermediate_size = required_int(j, "intermediate_size", path);
  c.num_layers = required_int(j, "num_hidden_layers", path);
  c.num_heads = required_int(j, "num_attention_heads", path);
  c.vocab_size = required_int(j, "vocab_size", path);
  c.num_kv_heads = optional_int(j, "num_key_value_heads", c.num_heads, path);
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = required_int(j, "head_dim", path);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      throw Error(path + ": hidden_size " + std::to_string(c.hidden_size) +
                  " is not divisible by num_attention_heads " + std::to_string(c.num_heads));
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error(path + ": num_attention_heads " + std::to_string(c.num_heads) +
                " is not divisible by num_key_value_heads " + std::to_string(c.num_kv_heads));
  c.max_position_embeddings = optional_int(j, "max_position_embeddings", c.max_position_embeddings, path);
  c.rms_norm_eps = optional_positive(j, "rms_norm_eps", c.rms_norm_eps, path);
  c.rope_theta = optional_positive(j, "rope_theta", c.rope_theta, path);
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", false, path);
  c.attention_bias = arch.attention_bias || optional_bool(j, "attention_bias", false, path);
  c.bos_token_id = token_id(j, "bos_token_id", c.bos_token_id, path);
  c.eos_token_id = token_id(j, "eos_token_id", c.eos_token_id, path);
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  json j;
  try {
    j = json::parse(read_text_file(path));
  } catch (const json::parse_error& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    throw Error(path + ": malformed JSON: " + msg);
  }
  return from_json(j, path);
}

json ModelConfig::to_json() const {
  return json{{"architectures", json::array({architecture})},
              {"model_type", model_type},
              {"hidden_size", hidden_size},
              {"intermediate_size", intermediate_size},
              {"num_hidden_layers", num_layers},
              {"num_attention_heads", num_heads},
              {"num_key_value_heads", num_kv_heads},
              {"head_dim", head_dim},
              {"vocab_size", vocab_size},
              {"max_position_embeddings", max_position_embeddings},
              {"rms_norm_eps", rms_norm_eps},
              {"rope_theta", rope_theta},
              {"hidden_act", "silu"},
              {"tie_word_embeddings", tie_word_embeddings},
              {"attention_bias", attention_bias},
              {"bos_token_id", bos_token_id},
              {"eos_token_id", eos_token_id},
              {"torch_dtype", "float32"}};
}

std::string layer_prefix(int layer) { return "model.layers." + std::to_string(layer) + "."; }

Model::Model(ModelConfig cfg, std::shared_ptr<TensorSource> src, std::string path,
             std::vector<std::string> files)
    : config_(std::move(cfg)), tensors_(std::move(src)), path_(std::move(path)), files_(std::move(files)) {}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

Model Model::open(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path + ": cannot open: No such file or directory");
  OpenedSource src = fs::is_directory(path, ec) ? open_hf_dir(path)
                     : is_gguf_file(path)        ? open_gguf(path)
                                                 : open_llama2c(path);
  Model m(std::move(src.config), std::move(src.tensors), path, std::move(src.files));
  m.tokenizer_metadata_ = std::move(src.tokenizer);
  for (const auto& [name, shape] : m.required_tensors()) {
    const TensorInfo* info = m.tensors().find(name);
    if (!info && m.is_packed_weight(name)) continue;
    if (!info)
      throw Error(path + ": missing tensor '" + name + "' needed by " + m.config().architecture);
    if (info->shape != shape)
      throw Error(path + ": tensor '" + name + "' has shape " + shape_str(info->shape) + ", expected " +
                  shape_str(shape));
  }
  return m;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Model::required_tensors() const {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, q = int64_t(c.num_heads) * c.head_dim,
                kv = int64_t(c.num_kv_heads) * c.head_dim, ffn = c.intermediate_size, v = c.vocab_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {v, h}});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix(i);
    out.push_back({p + "input_layernorm.weight", {h}});
    out.push_back({p + "self_attn.q_proj.weight", {q, h}});
    out.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    out.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    if (c.attention_bias) {
      out.push_back({p + "self_attn.q_proj.bias", {q}});
      out.push_back({p + "self_attn.k_proj.bias", {kv}});
      out.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    out.push_back({p + "self_attn.o_proj.weight", {h, q}});
    out.push_back({p + "post_attention_layernorm.weight", {h}});
    out.push_back({p + "mlp.gate_proj.weight", {ffn, h}});
    out.push_back({p + "mlp.up_proj.weight", {ffn, h}});
    out.push_back({p + "mlp.down_proj.weight", {h, ffn}});
  }
  out.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {v, h}});
  return out;
}

bool Model::is_packed_weight(const std::string& weight_name) const {
  const std::string suffix = ".weight";
  if (!weight_name.ends_with(suffix)) return false;
  return tensors_->find(weight_name.substr(0, weight_name.size() - suffix.size()) + ".qweight") != nullptr;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& name : tensors_->names()) {
    int64_t e = 1;
    for (int64_t d : tensors_->find(name)->shape) e *= d;
    n += e;
  }
  return n;
}

const std::string& Model::checksum() const {
  if (!checksum_) {
    // Hash of per-file hashes: stable across how the files are read, and names bind content to role.
    Sha256 h;
    for (const auto& f : files_) {
      h.update(sha256_file_hex(f));
      h.update(fs::path(f).filename().string());
    }
    checksum_ = std::make_shared<std::string>(h.final_hex());
  }
  return *checksum_;
}

}  // namespace ptq
