#include "support/synthetic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <vector>

#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/model.h"

namespace ptq::synthetic {
namespace {

// Generation order is fixed (tensors are drawn in the order written here), so one seed gives
// one byte-identical checkpoint on a given standard library.
class Generator {
 public:
  explicit Generator(const LlamaShape& s) : s_(s), rng_(s.seed), t_(s.student_t_dof) {}

  Mat weight(int64_t out, int64_t in) {
    Mat m(out, in);
    const float scale = 1.0f / std::sqrt(float(in));
    for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = t_(rng_) * scale;
    return m;
  }
  Mat norm(int64_t n, const std::vector<int>& outliers) {
    std::normal_distribution<float> jitter(0.0f, 0.02f);
    Mat m(1, n);
    for (int64_t i = 0; i < n; ++i) m(0, i) = 1.0f + jitter(rng_);
    for (int c : outliers) m(0, c) *= s_.outlier_scale;
    return m;
  }
  std::vector<int> pick_channels(int hidden, int k) {
    std::vector<int> idx(hidden);
    std::iota(idx.begin(), idx.end(), 0);
    // Partial Fisher-Yates with our own draws, so the choice depends only on the seed.
    for (int i = 0; i < k; ++i) {
      const int j = i + int(rng_() % uint64_t(hidden - i));
      std::swap(idx[i], idx[j]);
    }
    idx.resize(k);
    std::sort(idx.begin(), idx.end());
    return idx;
  }

 private:
  const LlamaShape& s_;
  std::mt19937_64 rng_;
  std::student_t_distribution<float> t_;
};

void check_shape(const LlamaShape& s) {
  if (s.hidden <= 0 || s.layers <= 0 || s.heads <= 0 || s.kv_heads <= 0 || s.ffn <= 0 || s.vocab <= 0)
    throw Error("synthetic llama: every size must be positive");
  if (s.hidden % s.heads != 0 || s.heads % s.kv_heads != 0)
    throw Error("synthetic llama: hidden must divide by heads and heads by kv_heads");
  if (s.outlier_channels < 0 || s.outlier_channels > s.hidden)
    throw Error("synthetic llama: outlier_channels must lie in [0, hidden]");
  if (!(s.student_t_dof > 0.0f)) throw Error("synthetic llama: student_t_dof must be positive");
}

ModelConfig config_for(const LlamaShape& s) {
  ModelConfig c;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.ffn;
  c.num_layers = s.layers;
  c.num_heads = s.heads;
  c.num_kv_heads = s.kv_heads;
  c.head_dim = s.hidden / s.heads;
  c.vocab_size = s.vocab;
  c.tie_word_embeddings = false;
  return c;
}

}  // namespace

void write_llama(const std::string& dir, const LlamaShape& shape) {
  check_shape(shape);
  std::filesystem::create_directories(dir);
  const ModelConfig c = config_for(shape);
  const int64_t h = c.hidden_size, q = int64_t(c.num_heads) * c.head_dim,
                kv = int64_t(c.num_kv_heads) * c.head_dim, ffn = c.intermediate_size;
  Generator g(shape);
  const std::vector<int> outliers = g.pick_channels(shape.hidden, shape.outlier_channels);
  SafetensorsWriter w;
  // Embedding columns carry the outliers too, so the residual stream (the layers' input) has them.
  Mat embed = g.weight(c.vocab_size, h);
  for (int ch : outliers) embed.col(ch) *= shape.outlier_scale;
  w.add_f32("model.embed_tokens.weight", embed);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix(i);
    w.add_f32(p + "input_layernorm.weight", g.norm(h, outliers), {h});
    w.add_f32(p + "self_attn.q_proj.weight", g.weight(q, h));
    w.add_f32(p + "self_attn.k_proj.weight", g.weight(kv, h));
    w.add_f32(p + "self_attn.v_proj.weight", g.weight(kv, h));
    w.add_f32(p + "self_attn.o_proj.weight", g.weight(h, q));
    w.add_f32(p + "post_attention_layernorm.weight", g.norm(h, outliers), {h});
    w.add_f32(p + "mlp.gate_proj.weight", g.weight(ffn, h));
    w.add_f32(p + "mlp.up_proj.weight", g.weight(ffn, h));
    w.add_f32(p + "mlp.down_proj.weight", g.weight(h, ffn));
  }
  w.add_f32("model.norm.weight", g.norm(h, {}), {h});
  w.add_f32("lm_head.weight", g.weight(c.vocab_size, h));
  w.set_metadata("format", "pt");
  w.set_metadata("ptq_synthetic_seed", std::to_string(shape.seed));
  const std::filesystem::path d(dir);
  write_file_atomic((d / "config.json").string(), c.to_json().dump(2) + "\n");
  w.write((d / "model.safetensors").string());
}

}  // namespace ptq::synthetic
