#pragma once
// The Model view: architecture from config.json plus lazy access to every tensor by its
// Hugging Face name. Two on-disk sources map onto it: an HF directory (model.safetensors or
// sharded via model.safetensors.index.json) and a llama2.c v0 checkpoint (.bin), whose q/k rows
// are permuted into HF's rotate_half layout so both give identical activations.
//
// Tensor names (HF Llama):
//   model.embed_tokens.weight [vocab, hidden]      model.norm.weight [hidden]
//   lm_head.weight [vocab, hidden] (absent when tie_word_embeddings)
//   model.layers.{i}.input_layernorm.weight, model.layers.{i}.post_attention_layernorm.weight
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight (+ .bias for q/k/v when attention_bias)
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ptq/tensor.h"
#include "ptq/tokenizer_metadata.h"

namespace ptq {

// RoPE's frequency scaling as transformers defines it (modeling_rope_utils.py). `dynamic` (NTK)
// changes the frequencies only past `original_max_position_embeddings` (else
// max_position_embeddings) positions, which ptq's forward does not run, so within the positions
// it runs it equals `default`.
struct RopeScaling {
  std::string type = "default";  // default | linear | dynamic | llama3
  double factor = 1.0;           // linear, dynamic, llama3
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  int original_max_position_embeddings = 0;              // llama3 (required), dynamic (optional)
  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";
  std::string model_type = "llama";
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // Qwen2: q/k/v carry a bias
  int bos_token_id = 1;
  int eos_token_id = 2;

  // Parses and validates an HF config.json; throws Error naming `path` and the bad field.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& path);
  static ModelConfig from_file(const std::string& path);
  nlohmann::json to_json() const;
  bool operator==(const ModelConfig&) const = default;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t nbytes = 0;
  std::string file;  // the file that holds it
  // GGUF sources: the ggml type id it is stored as (dtype is the F32 it loads as); else -1.
  int64_t ggml_type = -1;
};

// A checkpoint's tensors, read lazily (files are memory-mapped).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual std::vector<std::string> names() const = 0;  // sorted
  virtual const TensorInfo* find(const std::string& name) const = 0;  // nullptr when absent
  // The tensor converted to f32. A 1-D tensor comes back as a 1×n matrix; ≥3-D is flattened to
  // [shape[0], rest]. Throws Error naming the tensor when it is absent.
  virtual Mat load_f32(const std::string& name) const = 0;
  // The raw bytes of a tensor in its stored dtype (for pass-through copies and packed formats).
  virtual std::vector<uint8_t> load_raw(const std::string& name) const = 0;
  // GGUF sources (TensorInfo::ggml_type set): the tensor's blocks as the file stores them, rows
  // in the file's order. Empty for every other source.
  virtual std::vector<uint8_t> load_ggml_blocks(const std::string&) const { return {}; }
};

// What a model source yields (formats/ registers the sources: HF directories, GGUF and llama2.c files).
struct OpenedSource {
  ModelConfig config;
  std::shared_ptr<TensorSource> tensors;
  std::vector<std::string> files;  // hashed by Model::checksum(), config first
  std::shared_ptr<const TokenizerMetadata> tokenizer;  // embedded in the file (GGUF), or nullptr
};

// A kind of on-disk checkpoint Model::open can read. Sources are tried by ascending priority;
// the first whose `accepts` is true opens the path (throwing Error on anything malformed).
struct ModelSource {
  const char* name;
  int priority;
  bool (*accepts)(const std::string& path);
  OpenedSource (*open)(const std::string& path);
};
void register_model_source(const ModelSource& source);
struct ModelSourceRegistrar {
  explicit ModelSourceRegistrar(const ModelSource& s) { register_model_source(s); }
};

class Model {
 public:
  // `path` is anything a registered source accepts (an HF directory, a llama2.c .bin, a GGUF
  // file, ...). Throws Error on anything malformed, and when a tensor the architecture needs is
  // missing or has the wrong shape.
  static Model open(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const TensorSource& tensors() const { return *tensors_; }
  const std::string& path() const { return path_; }
  Mat weight(const std::string& name) const { return tensors_->load_f32(name); }
  // Every tensor name the architecture needs, in layer order, with its expected shape.
  std::vector<std::pair<std::string, std::vector<int64_t>>> required_tensors() const;
  // True when a linear weight (`<module>.weight`) is stored quantized instead: `<module>.qweight`
  // (GPTQ/AWQ checkpoints), `<module>.weight_packed` (compressed-tensors) or `<module>.grid.codes`
  // (the native ptq format); its shape is checked by the format's reader.
  bool is_packed_weight(const std::string& weight_name) const;
  int64_t parameter_count() const;  // sum over all stored tensors
  // Throws Error naming the first floating-point tensor (in name order) that holds a NaN or an
  // infinity, and where. One pass over the weights: compress and calibrate call it before any
  // work, so a bad value is blamed on its tensor, not on the first layer it reaches.
  void check_finite_weights() const;
  // SHA-256 over the checkpoint's files (config and weights), hex; computed once, cached.
  const std::string& checksum() const;
  // The tokenizer the checkpoint file itself embeds (GGUF), or nullptr.
  const std::shared_ptr<const TokenizerMetadata>& tokenizer_metadata() const { return tokenizer_metadata_; }

  Model(ModelConfig cfg, std::shared_ptr<TensorSource> src, std::string path,
        std::vector<std::string> files);

 private:
  ModelConfig config_;
  std::shared_ptr<TensorSource> tensors_;
  std::string path_;
  std::vector<std::string> files_;  // files hashed for checksum()
  mutable std::shared_ptr<std::string> checksum_;
  std::shared_ptr<const TokenizerMetadata> tokenizer_metadata_;
};

// Name helpers so no module spells tensor names by hand.
std::string layer_prefix(int layer);  // "model.layers.{layer}."

}  // namespace ptq
