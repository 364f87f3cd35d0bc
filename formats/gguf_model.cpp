// GGUF checkpoints as a model source: llama.cpp's hparams become a ModelConfig, its tensor names
// become HF names, and tensors are dequantized to f32 when loaded (formats/ggml_blocks.h).
// Loading inverts llama.cpp's q/k row permutation (formats/gguf_names.h). qwen2 is converted without permutation (its RoPE is already rotate_half).
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "formats/gguf_file.h"
#include "formats/gguf_names.h"
#include "formats/tensor_sources.h"
#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq {
namespace {

struct GgufArch {
  const char* gguf;
  const char* architecture;
  const char* model_type;
  bool permute_qk;
  bool qkv_bias;
};
constexpr GgufArch kArchs[] = {{"llama", "LlamaForCausalLM", "llama", true, false},
                               {"qwen2", "Qwen2ForCausalLM", "qwen2", false, true}};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<int64_t> reversed(std::vector<int64_t> v) { return {v.rbegin(), v.rend()}; }

// The GGUF name of an HF tensor, for messages.
std::string gguf_name(const std::string& hf) { return gguf_tensor_name(hf).value_or(hf); }

// A hyperparameter that may be one integer or (llama.cpp allows it) one per layer; ptq needs
// one value for all layers.
int layer_hparam(const GgufFile& f, const std::string& key, std::optional<int> fallback) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback) return *fallback;
    throw Error(f.path() + ": missing required metadata key '" + key + "' (a positive integer)");
  }
  int64_t value = 0;
  if (v->type == GgufType::ARRAY && v->elem_type != GgufType::STRING && v->count > 0) {
    value = v->int_at(0);
    for (uint64_t k = 1; k < v->count; ++k)
      if (v->int_at(k) != value)
        throw Error(f.path() + ": metadata key '" + key + "' differs between layers; ptq needs one value for all");
  } else if (v->is_integer()) {
    value = v->i;
  } else {
    throw Error(f.path() + ": metadata key '" + key + "' must be a positive integer, found " + v->type_string());
  }
  if (value <= 0 || value > INT32_MAX)
    throw Error(f.path() + ": metadata key '" + key + "' must be a positive integer, found " + std::to_string(value));
  return int(value);
}

int positive_int(const GgufFile& f, const std::string& key, std::optional<int> fallback) {
  const std::optional<uint64_t> v = f.optional_uint(key);
  if (!v) {
    if (fallback) return *fallback;
    throw Error(f.path() + ": missing required metadata key '" + key + "' (a positive integer)");
  }
  if (*v == 0 || *v > uint64_t(INT32_MAX))
    throw Error(f.path() + ": metadata key '" + key + "' must be a positive integer, found " + std::to_string(*v));
  return int(*v);
}

const GgufArch& find_arch(const GgufFile& f) {
  const std::string arch = f.required_string("general.architecture");
  for (const auto& a : kArchs)
    if (arch == a.gguf) return a;
  throw Error(f.path() + ": unsupported GGUF architecture '" + arch + "' (ptq reads llama and qwen2)");
}

std::shared_ptr<const TokenizerMetadata> read_tokenizer(const GgufFile& f) {
  const std::optional<std::string> model = f.optional_string("tokenizer.ggml.model");
  if (!model) return nullptr;
  auto t = std::make_shared<TokenizerMetadata>();
  t->source = f.path();
  t->model = *model;
  t->pre = f.optional_string("tokenizer.ggml.pre").value_or("default");
  const GgufValue* tokens = f.optional_array("tokenizer.ggml.tokens", true);
  if (!tokens) throw Error(f.path() + ": tokenizer.ggml.model is set but tokenizer.ggml.tokens is missing");
  t->tokens.assign(tokens->strings.begin(), tokens->strings.end());
  const uint64_t n = t->tokens.size();
  if (const GgufValue* s = f.optional_array("tokenizer.ggml.scores", false)) {
    if (s->count != n)
      throw Error(f.path() + ": tokenizer.ggml.scores has " + std::to_string(s->count) + " entries for " +
                  std::to_string(n) + " tokens");
    for (uint64_t k = 0; k < n; ++k) t->scores.push_back(float(s->float_at(k)));
  }
  if (const GgufValue* s = f.optional_array("tokenizer.ggml.token_type", false)) {
    if (s->count != n)
      throw Error(f.path() + ": tokenizer.ggml.token_type has " + std::to_string(s->count) + " entries for " +
                  std::to_string(n) + " tokens");
    for (uint64_t k = 0; k < n; ++k) t->token_types.push_back(int32_t(s->int_at(k)));
  }
  if (const GgufValue* m = f.optional_array("tokenizer.ggml.merges", true))
    t->merges.assign(m->strings.begin(), m->strings.end());
  // As llama.cpp does, an id outside the vocabulary is ignored rather than trusted.
  auto special = [&](const char* key, int* out) {
    if (auto v = f.optional_uint(key); v && *v < n) *out = int(*v);
  };
  special("tokenizer.ggml.bos_token_id", &t->bos_id);
  special("tokenizer.ggml.eos_token_id", &t->eos_id);
  special("tokenizer.ggml.unknown_token_id", &t->unk_id);
  special("tokenizer.ggml.padding_token_id", &t->pad_id);
  t->add_bos = f.optional_bool("tokenizer.ggml.add_bos_token");
  t->add_eos = f.optional_bool("tokenizer.ggml.add_eos_token");
  t->chat_template = f.optional_string("tokenizer.chat_template").value_or("");
  return t;
}

ModelConfig read_config(const GgufFile& f, const GgufArch& arch, const TokenizerMetadata* tok) {
  const std::string p = std::string(arch.gguf) + ".";
  ModelConfig c;
  c.architecture = arch.architecture;
  c.model_type = arch.model_type;
  c.hidden_size = positive_int(f, p + "embedding_length", std::nullopt);
  c.num_layers = positive_int(f, p + "block_count", std::nullopt);
  c.intermediate_size = layer_hparam(f, p + "feed_forward_length", std::nullopt);
  c.num_heads = layer_hparam(f, p + "attention.head_count", std::nullopt);
  c.num_kv_heads = layer_hparam(f, p + "attention.head_count_kv", c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error(f.path() + ": attention.head_count " + std::to_string(c.num_heads) +
                " is not divisible by attention.head_count_kv " + std::to_string(c.num_kv_heads));
  if (!f.find(p + "attention.key_length") && c.hidden_size % c.num_heads != 0)
    throw Error(f.path() + ": embedding_length " + std::to_string(c.hidden_size) +
                " is not divisible by attention.head_count " + std::to_string(c.num_heads));
  c.head_dim = positive_int(f, p + "attention.key_length", c.hidden_size / c.num_heads);
  if (positive_int(f, p + "attention.value_length", c.head_dim) != c.head_dim)
    throw Error(f.path() + ": attention.value_length differs from the key length; ptq needs them equal");
  if (c.head_dim % 2 != 0) throw Error(f.path() + ": head size " + std::to_string(c.head_dim) + " is odd");
  if (positive_int(f, p + "rope.dimension_count", c.head_dim) != c.head_dim)
    throw Error(f.path() + ": rope.dimension_count differs from the head size " + std::to_string(c.head_dim) +
                "; ptq's forward rotates whole heads");
  if (auto scaling = f.optional_string(p + "rope.scaling.type"); scaling && *scaling != "none") {
    if (*scaling != "linear")
      throw Error(f.path() + ": rope scaling '" + *scaling + "' is not supported by ptq's forward (none, linear)");
    const std::optional<double> factor = f.optional_float(p + "rope.scaling.factor");
    if (!factor || !(*factor > 0))
      throw Error(f.path() + ": rope scaling 'linear' needs a positive rope.scaling.factor");
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = *factor;
  }
  c.max_position_embeddings = positive_int(f, p + "context_length", std::nullopt);
  c.rms_norm_eps = f.required_float(p + "attention.layer_norm_rms_epsilon");
  if (!(c.rms_norm_eps > 0)) throw Error(f.path() + ": attention.layer_norm_rms_epsilon must be positive");
  c.rope_theta = f.optional_float(p + "rope.freq_base").value_or(10000.0);
  if (!(c.rope_theta > 0)) throw Error(f.path() + ": rope.freq_base must be positive");
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  const int fallback_vocab = tok ? int(tok->tokens.size()) : embd && embd->ne.size() == 2 ? int(embd->ne[1]) : 0;
  c.vocab_size = positive_int(f, p + "vocab_size", fallback_vocab > 0 ? std::optional<int>(fallback_vocab) : std::nullopt);
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = arch.qkv_bias || f.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (tok && tok->bos_id >= 0) c.bos_token_id = tok->bos_id;
  if (tok && tok->eos_id >= 0) c.eos_token_id = tok->eos_id;
  return c;
}

struct Entry {
  const GgufTensorInfo* tensor = nullptr;
  std::vector<int64_t> shape;  // HF shape
  int permute_heads = 0;       // > 0: undo llama.cpp's q/k row permutation over this many heads
};

class GgufSource : public F32TensorTable {
 public:
  GgufSource(std::shared_ptr<GgufFile> file, std::map<std::string, Entry> entries)
      : file_(std::move(file)), entries_(std::move(entries)) {
    for (const auto& [name, e] : entries_) add_f32_tensor(name, e.shape, file_->path(), int64_t(e.tensor->type));
  }
  Mat load_f32(const std::string& name) const override {
    const Entry& e = entry(name);
    const GgufTensorInfo& t = *e.tensor;
    if (e.shape.size() == 1) {
      Mat m(1, e.shape[0]);
      file_->dequantize_row(t, 0, m.data());
      if (e.permute_heads > 0) permute_vector(m, e.permute_heads);
      return m;
    }
    const int64_t rows = e.shape[0], cols = e.shape[1];
    Mat m(rows, cols);
    const int64_t hd = e.permute_heads > 0 ? rows / e.permute_heads : 0;
    constexpr int64_t kRowsPerTask = 256;
    parallel_for_each(static_cast<size_t>((rows + kRowsPerTask - 1) / kRowsPerTask), [&](size_t task) {
      const int64_t end = std::min<int64_t>(rows, (int64_t(task) + 1) * kRowsPerTask);
      for (int64_t r = int64_t(task) * kRowsPerTask; r < end; ++r)
        file_->dequantize_row(t, hd > 0 ? gguf_row_of(r, hd) : r, m.row(r).data());
    });
    return m;
  }
  std::vector<uint8_t> load_ggml_blocks(const std::string& name) const override {
    const GgufTensorInfo& t = *entry(name).tensor;
    const uint8_t* p = file_->tensor_data(t);
    return {p, p + t.nbytes};
  }

 private:
  static void permute_vector(Mat& m, int heads) {
    const Mat src = m;
    const int64_t hd = m.cols() / heads;
    for (int64_t r = 0; r < m.cols(); ++r) m(0, r) = src(0, gguf_row_of(r, hd));
  }
  const Entry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw Error(file_->path() + ": no tensor named '" + name + "'");
    return it->second;
  }
  std::shared_ptr<GgufFile> file_;
  std::map<std::string, Entry> entries_;
};

std::string hparams_str(const ModelConfig& c) {
  return "hidden " + std::to_string(c.hidden_size) + ", " + std::to_string(c.num_heads) + " heads / " +
         std::to_string(c.num_kv_heads) + " kv of " + std::to_string(c.head_dim) + ", ffn " +
         std::to_string(c.intermediate_size) + ", vocab " + std::to_string(c.vocab_size);
}

// Every tensor the forward needs is present with its shape, each is readable, and nothing the
// forward would silently ignore is in the file. Messages use the file's own tensor names.
void check_tensors(const GgufFile& f, const GgufArch& arch, const ModelConfig& cfg,
                   const std::map<std::string, Entry>& entries, const std::shared_ptr<TensorSource>& src) {
  // Each block needs at least its 7 linear layers and 2 norms: a block_count the tensor count
  // cannot hold is refused before the list of required names (one per tensor) is built.
  if (int64_t(cfg.num_layers) * 9 > int64_t(entries.size()))
    throw Error(f.path() + ": " + arch.gguf + ".block_count is " + std::to_string(cfg.num_layers) + ", but the file has " +
                std::to_string(entries.size()) + " tensors, fewer than 9 per block");
  const Model view(cfg, src, f.path(), {});
  std::map<std::string, bool> required;
  for (const auto& [name, shape] : view.required_tensors()) {
    required[name] = true;
    auto it = entries.find(name);
    if (it == entries.end())
      throw Error(f.path() + ": missing tensor '" + gguf_name(name) + "' (" + name + "), needed by " + arch.gguf +
                  " with " + hparams_str(cfg));
    if (it->second.shape != shape)
      throw Error(f.path() + ": tensor '" + it->second.tensor->name + "' has ne " + shape_str(it->second.tensor->ne) +
                  ", expected ne " + shape_str(reversed(shape)) + " from the " + arch.gguf + " hparams (" +
                  hparams_str(cfg) + ")");
    const GgmlTypeTraits& tr = ggml_traits(it->second.tensor->type);
    if (!tr.dequantize)
      throw Error(f.path() + ": tensor '" + it->second.tensor->name + "' has type " + tr.name +
                  ", which ptq cannot dequantize (it reads " + dequantizable_ggml_types() + ")");
  }
  for (const auto& [name, e] : entries)
    if (!required.count(name))
      throw Error(f.path() + ": tensor '" + e.tensor->name + "' (" + name + ") is not used by ptq's " + arch.gguf +
                  " forward; refusing to drop it silently");
}

}  // namespace

OpenedSource open_gguf(const std::string& path) {
  auto file = std::make_shared<GgufFile>(path);
  const GgufArch& arch = find_arch(*file);
  OpenedSource out;
  out.tokenizer = read_tokenizer(*file);
  out.config = read_config(*file, arch, out.tokenizer.get());
  const ModelConfig& c = out.config;
  std::map<std::string, Entry> entries;
  for (const auto& t : file->tensors()) {
    if (t.name == "rope_freqs.weight")
      throw Error(path + ": tensor 'rope_freqs.weight' (Llama 3.1-style rope scaling) is not supported by ptq's forward");
    const std::optional<std::string> hf = hf_tensor_name(t.name, c.num_layers);
    if (!hf)
      throw Error(path + ": tensor '" + t.name + "' has no Hugging Face equivalent for architecture " + arch.gguf +
                  " (ptq maps token_embd, output_norm, output and blk.N.{attn_norm, attn_q, attn_k, attn_v, "
                  "attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down} for N < " + std::to_string(c.num_layers) + ")");
    Entry e;
    e.tensor = &t;
    e.shape = reversed(t.ne);
    if (e.shape.size() > 2)
      throw Error(path + ": tensor '" + t.name + "' has " + std::to_string(t.ne.size()) + " dimensions, expected 1 or 2");
    if (arch.permute_qk) e.permute_heads = qk_permuted_heads(*hf, c.num_heads, c.num_kv_heads);
    entries[*hf] = e;
  }
  // The permutation needs whole heads; a wrong shape is reported by check_tensors first.
  auto src = std::make_shared<GgufSource>(file, entries);
  check_tensors(*file, arch, c, entries, src);
  out.tensors = src;
  out.files = {path};
  return out;
}

// Tried before llama2.c, whose source accepts any regular file.
static const ModelSourceRegistrar kGgufSource({"gguf", 50, [](const std::string& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) && is_gguf_file(p);
}, open_gguf});

}  // namespace ptq
