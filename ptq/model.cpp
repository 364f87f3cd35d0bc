#include "ptq/model.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <optional>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"
#include "ptq/parallel.h"
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
  if (it->is_null()) throw Error(path + ": field '" + key + "' must be a positive integer, found null");
  return int(json_int_field(j, key, 0, 1, INT32_MAX, path));
}

int optional_int(const json& j, const char* key, int fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return int(json_int_field(j, key, fallback, 1, INT32_MAX, path));
}

double optional_positive(const json& j, const char* key, double fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number() || it->get<double>() <= 0)
    throw Error(path + ": field '" + key + "' must be a positive number, found " + describe_json(*it));
  return it->get<double>();
}

bool optional_bool(const json& j, const char* key, bool fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return json_bool_field(j, key, fallback, path);
}

// Token ids may be an int or (Llama 3 style) a list whose first entry is the primary one.
int token_id(const json& j, const char* key, int fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  const json& v = it->is_array() && !it->empty() ? (*it)[0] : *it;
  const bool ok = v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX &&
                  !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT32_MAX));
  if (!ok)
    throw Error(path + ": field '" + key + "' must be a non-negative integer token id, found " + describe_json(*it));
  return v.get<int>();
}

// A scaling object (`rope_scaling`, or transformers 5's `rope_parameters`) as RopeScaling; a type
// ptq's forward does not compute is refused rather than silently computed as plain RoPE.
RopeScaling rope_scaling_of(const json& o, const std::string& where) {
  RopeScaling s;
  for (const char* type_key : {"rope_type", "type"})
    if (o.contains(type_key) && !o[type_key].is_null()) s.type = json_string_field(o, type_key, s.type, where);
  if (s.type == "default") return s;
  if (s.type != "linear" && s.type != "dynamic" && s.type != "llama3")
    throw Error(where + " has rope type '" + s.type +
                "', which ptq's forward does not compute (it computes default, linear, dynamic and llama3)");
  auto required_positive = [&](const char* key) {
    if (!o.contains(key) || o[key].is_null())
      throw Error(where + ": rope type '" + s.type + "' needs the field '" + key + "' (a positive number)");
    return optional_positive(o, key, 0.0, where);
  };
  s.factor = required_positive("factor");
  if (s.type == "llama3") {
    s.low_freq_factor = required_positive("low_freq_factor");
    s.high_freq_factor = required_positive("high_freq_factor");
    if (!o.contains("original_max_position_embeddings"))
      throw Error(where + ": rope type 'llama3' needs the field 'original_max_position_embeddings'");
    if (s.high_freq_factor <= s.low_freq_factor)
      throw Error(where + ": high_freq_factor must be larger than low_freq_factor");
  }
  s.original_max_position_embeddings = optional_int(o, "original_max_position_embeddings", 0, where);
  return s;
}

// RoPE as transformers writes it: `rope_theta` at the top level (transformers 4) or inside
// `rope_parameters` (transformers 5), and the scaling in `rope_scaling` or `rope_parameters`.
// Where both are present they must agree.
void read_rope(const json& j, const std::string& path, ModelConfig& c) {
  double theta = optional_positive(j, "rope_theta", c.rope_theta, path);
  std::optional<RopeScaling> scaling;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object())
      throw Error(path + ": field '" + key + "' must be an object or null, found " + describe_json(*it));
    const std::string where = path + ": " + key;
    const RopeScaling s = rope_scaling_of(*it, where);
    if (scaling && !(*scaling == s))
      throw Error(path + ": rope_parameters and rope_scaling describe different RoPE scalings");
    scaling = s;
    if (it->contains("rope_theta") && !(*it)["rope_theta"].is_null()) {
      const double inner = optional_positive(*it, "rope_theta", theta, where);
      if (j.contains("rope_theta") && !j["rope_theta"].is_null() && inner != theta)
        throw Error(path + ": rope_theta " + describe_json(j["rope_theta"]) + " and " + key + ".rope_theta " +
                    describe_json((*it)["rope_theta"]) + " disagree");
      theta = inner;
    }
  }
  c.rope_theta = theta;
  if (scaling) c.rope_scaling = *scaling;
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& path) {
  if (!j.is_object()) throw Error(path + ": expected a JSON object, found " + std::string(j.type_name()));
  const ArchInfo& arch = find_arch(j, path);
  ModelConfig c;
  c.architecture = arch.architecture;
  c.model_type = json_string_field(j, "model_type", arch.model_type, path);
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
  read_rope(j, path, c);
  const std::string act = json_string_field(j, "hidden_act", "silu", path);
  if (act != "silu")
    throw Error(path + ": hidden_act '" + act + "' is not one ptq's forward computes (silu)");
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", false, path);
  c.attention_bias = arch.attention_bias || optional_bool(j, "attention_bias", false, path);
  c.bos_token_id = token_id(j, "bos_token_id", c.bos_token_id, path);
  c.eos_token_id = token_id(j, "eos_token_id", c.eos_token_id, path);
  // Projection widths are ints throughout the forward; token ids index the embedding.
  for (const auto& [name, width] : {std::pair<const char*, int64_t>{"num_attention_heads x head_dim",
                                                                    int64_t(c.num_heads) * c.head_dim},
                                    {"num_key_value_heads x head_dim", int64_t(c.num_kv_heads) * c.head_dim}})
    if (width > INT32_MAX) throw Error(path + ": " + name + " = " + std::to_string(width) + " is too large");
  for (const auto& [name, id] : {std::pair<const char*, int>{"bos_token_id", c.bos_token_id}, {"eos_token_id", c.eos_token_id}})
    if (id >= c.vocab_size)
      throw Error(path + ": " + name + " " + std::to_string(id) + " is outside the vocabulary of " +
                  std::to_string(c.vocab_size));
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  return from_json(read_json_file(path), path);
}

json ModelConfig::to_json() const {
  json j = json{{"architectures", json::array({architecture})},
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
  // transformers 4's field, which transformers 5 still reads (and converts to rope_parameters).
  const RopeScaling& r = rope_scaling;
  if (r.type != "default") {
    json s = {{"rope_type", r.type}, {"factor", r.factor}};
    if (r.type == "llama3") {
      s["low_freq_factor"] = r.low_freq_factor;
      s["high_freq_factor"] = r.high_freq_factor;
    }
    if (r.original_max_position_embeddings > 0)
      s["original_max_position_embeddings"] = r.original_max_position_embeddings;
    j["rope_scaling"] = s;
  }
  return j;
}

std::string layer_prefix(int layer) { return "model.layers." + std::to_string(layer) + "."; }

Model::Model(ModelConfig cfg, std::shared_ptr<TensorSource> src, std::string path,
             std::vector<std::string> files)
    : config_(std::move(cfg)), tensors_(std::move(src)), path_(std::move(path)), files_(std::move(files)) {}

// The architecture must fit in the bytes the checkpoint stores, before anything is built from
// it: 2^31 layers in a config.json beside a 1 MB safetensors file is refused here, not after
// allocating names for every layer. Linear weights count at 2 bits (the narrowest packed code),
// everything else at 1 byte, so every real checkpoint, packed ones included, passes.
static void check_size_against_files(const Model& m) {
  const ModelConfig& c = m.config();
  using Big = unsigned __int128;
  const Big h = Big(c.hidden_size), q = Big(c.num_heads) * Big(c.head_dim), kv = Big(c.num_kv_heads) * Big(c.head_dim),
            ffn = Big(c.intermediate_size), v = Big(c.vocab_size), layers = Big(c.num_layers);
  const Big linear_per_layer = 2 * q * h + 2 * kv * h + 3 * ffn * h;
  const Big other = layers * 2 * h + v * h * (c.tie_word_embeddings ? 1 : 2) + h;
  const Big needed = layers * linear_per_layer / 4 + other;
  Big stored = 0;
  for (const auto& name : m.tensors().names()) stored += Big(m.tensors().find(name)->nbytes);
  if (needed > stored) {
    const std::string need = needed > Big(UINT64_MAX) ? std::string("more than 2^64")
                                                       : std::to_string(static_cast<uint64_t>(needed));
    throw Error(m.path() + ": the architecture (" + std::to_string(c.num_layers) + " layers, hidden_size " +
                std::to_string(c.hidden_size) + ", intermediate_size " + std::to_string(c.intermediate_size) +
                ", vocab_size " + std::to_string(c.vocab_size) + ") needs at least " + need +
                " bytes of weights, but the checkpoint's tensors hold " + std::to_string(static_cast<uint64_t>(stored)));
  }
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

namespace {
struct SourceRegistry {
  std::mutex mutex;
  std::vector<ModelSource> sources;
};
SourceRegistry& sources() {
  static SourceRegistry r;
  return r;
}
}  // namespace

void register_model_source(const ModelSource& source) {
  SourceRegistry& r = sources();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.sources.push_back(source);
  std::stable_sort(r.sources.begin(), r.sources.end(),
                   [](const ModelSource& a, const ModelSource& b) { return a.priority < b.priority; });
}

Model Model::open(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path + ": cannot open: No such file or directory");
  std::vector<ModelSource> list;
  {
    SourceRegistry& r = sources();
    std::lock_guard<std::mutex> lock(r.mutex);
    list = r.sources;
  }
  const ModelSource* chosen = nullptr;
  for (const auto& s : list)
    if (s.accepts(path)) {
      chosen = &s;
      break;
    }
  if (!chosen) throw Error(path + ": not a model ptq can read (no registered source accepts it)");
  OpenedSource src = chosen->open(path);
  Model m(std::move(src.config), std::move(src.tensors), path, std::move(src.files));
  check_size_against_files(m);
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
  const std::string module = weight_name.substr(0, weight_name.size() - suffix.size());
  return tensors_->find(module + ".qweight") != nullptr || tensors_->find(module + ".weight_packed") != nullptr ||
         tensors_->find(module + ".grid.codes") != nullptr;
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

void Model::check_finite_weights() const {
  const std::vector<std::string> names = tensors_->names();
  std::vector<std::string> found(names.size());  // per tensor, so the report is thread-independent
  parallel_for_each(names.size(), [&](size_t i) {
    const TensorInfo* info = tensors_->find(names[i]);
    if (info->dtype != DType::F32 && info->dtype != DType::F16 && info->dtype != DType::BF16) return;
    const Mat m = tensors_->load_f32(names[i]);
    if (all_finite(m.data(), size_t(m.size()))) return;
    const bool vector = info->shape.size() <= 1;
    for (Eigen::Index r = 0; r < m.rows(); ++r)
      for (Eigen::Index c = 0; c < m.cols(); ++c)
        if (!std::isfinite(m(r, c))) {
          const std::string at = vector ? std::to_string(c) : std::to_string(r) + ", " + std::to_string(c);
          found[i] = std::string(std::isnan(m(r, c)) ? "NaN" : "an infinity") + " at [" + at + "]";
          return;
        }
  });
  for (size_t i = 0; i < names.size(); ++i)
    if (!found[i].empty())
      throw Error(tensors_->find(names[i])->file + ": tensor '" + names[i] + "' holds " + found[i] +
                  "; ptq quantizes finite weights only");
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
