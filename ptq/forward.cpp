#include "ptq/forward.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ptq/error.h"

namespace ptq {

const char* linear_input_name(LinearInput g) {
  static const char* kNames[] = {"qkv", "o", "gate_up", "down"};
  return kNames[int(g)];
}

const std::vector<std::string>& linear_short_names(LinearInput g) {
  static const std::vector<std::string> kNames[kNumLinearInputs] = {
      {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
      {"self_attn.o_proj"},
      {"mlp.gate_proj", "mlp.up_proj"},
      {"mlp.down_proj"}};
  return kNames[int(g)];
}

std::vector<std::string> linear_consumers(int layer, LinearInput g) {
  std::vector<std::string> out;
  for (const auto& n : linear_short_names(g)) out.push_back(layer_prefix(layer) + n);
  return out;
}

static Vec load_vec(const Model& m, const std::string& name) {
  Mat t = m.weight(name);
  return Eigen::Map<const Vec>(t.data(), t.size());
}

BlockWeights BlockWeights::load(const Model& model, int layer, const PackedLookup& packed_for) {
  const std::string p = layer_prefix(layer);
  BlockWeights w;
  w.attn_norm = load_vec(model, p + "input_layernorm.weight");
  w.ffn_norm = load_vec(model, p + "post_attention_layernorm.weight");
  for (int g = 0; g < kNumLinearInputs; ++g) {
    for (const auto& name : linear_short_names(LinearInput(g))) {
      Linear* lin = w.linear(name);
      if (packed_for) lin->packed = packed_for(p + name);
      if (!lin->packed) lin->w = model.weight(p + name + ".weight");
      if (model.config().attention_bias && g == int(LinearInput::kQKV))
        lin->bias = load_vec(model, p + name + ".bias");
    }
  }
  return w;
}

Linear* BlockWeights::linear(const std::string& n) {
  if (n == "self_attn.q_proj") return &q;
  if (n == "self_attn.k_proj") return &k;
  if (n == "self_attn.v_proj") return &v;
  if (n == "self_attn.o_proj") return &o;
  if (n == "mlp.gate_proj") return &gate;
  if (n == "mlp.up_proj") return &up;
  if (n == "mlp.down_proj") return &down;
  return nullptr;
}

const Linear* BlockWeights::linear(const std::string& n) const { return const_cast<BlockWeights*>(this)->linear(n); }

HeadWeights HeadWeights::load(const Model& model) {
  HeadWeights h;
  h.embed = model.weight("model.embed_tokens.weight");
  h.final_norm = load_vec(model, "model.norm.weight");
  h.lm_head = model.config().tie_word_embeddings ? h.embed : model.weight("lm_head.weight");
  return h;
}

std::vector<double> rope_inverse_frequencies(int head_dim, double theta, const RopeScaling& s) {
  const int half = head_dim / 2;
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = std::pow(theta, -2.0 * i / head_dim);
  if (s.type == "linear") {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == "llama3") {
    const double context = s.original_max_position_embeddings;
    const double low_freq_wavelen = context / s.low_freq_factor, high_freq_wavelen = context / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

RopeTable::RopeTable(const ModelConfig& cfg)
    : half_(cfg.head_dim / 2),
      max_pos_(cfg.max_position_embeddings),
      dynamic_(cfg.rope_scaling.type == "dynamic"),
      inv_freq_(rope_inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)) {
  if (dynamic_ && cfg.rope_scaling.original_max_position_embeddings > 0)
    max_pos_ = std::min(max_pos_, cfg.rope_scaling.original_max_position_embeddings);
  const int rows = std::min(max_pos_, kTablePositions);
  cos_.resize(size_t(rows) * half_);
  sin_.resize(cos_.size());
  for (int p = 0; p < rows; ++p) angles(p, &cos_[size_t(p) * half_], &sin_[size_t(p) * half_]);
}

void RopeTable::angles(int64_t p, float* c, float* s) const {
  for (int i = 0; i < half_; ++i) {
    // Angles in fp64 so long positions do not lose precision before the cast.
    double a = double(p) * inv_freq_[i];
    c[i] = float(std::cos(a));
    s[i] = float(std::sin(a));
  }
}

void RopeTable::apply(Mat& x, int num_heads, int64_t first_position) const {
  const int hd = 2 * half_;
  if (first_position + x.rows() > max_pos_)
    throw Error("sequence of " + std::to_string(first_position + x.rows()) + " tokens is longer than the model's " +
                std::to_string(max_pos_) + " positions" +
                (dynamic_ ? " (past them dynamic NTK RoPE scaling depends on the sequence length, which ptq does "
                            "not compute)"
                          : ""));
  std::vector<float> late_c, late_s;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const int64_t t = first_position + r;
    const float* c;
    const float* s;
    if (t < kTablePositions) {
      c = &cos_[size_t(t) * half_];
      s = &sin_[size_t(t) * half_];
    } else {
      late_c.resize(half_);
      late_s.resize(half_);
      angles(t, late_c.data(), late_s.data());
      c = late_c.data();
      s = late_s.data();
    }
    float* row = x.row(r).data();
    for (int h = 0; h < num_heads; ++h) {
      float* v = row + h * hd;
      for (int i = 0; i < half_; ++i) {
        float x1 = v[i], x2 = v[i + half_];
        v[i] = x1 * c[i] - x2 * s[i];
        v[i + half_] = x2 * c[i] + x1 * s[i];
      }
    }
  }
}

void rms_norm_rows(const Mat& x, const Vec& gain, double eps, Mat& out) {
  out.resize(x.rows(), x.cols());
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    double ss = 0;
    for (Eigen::Index i = 0; i < x.cols(); ++i) ss += double(x(t, i)) * x(t, i);
    float inv = float(1.0 / std::sqrt(ss / double(x.cols()) + eps));
    out.row(t) = (x.row(t) * inv).cwiseProduct(gain.transpose());
  }
}

Mat embed_tokens(const HeadWeights& head, const std::vector<int32_t>& ids) {
  Mat x(ids.size(), head.embed.cols());
  for (size_t t = 0; t < ids.size(); ++t) {
    if (ids[t] < 0 || ids[t] >= head.embed.rows())
      throw Error("token id " + std::to_string(ids[t]) + " is outside the vocabulary of " +
                  std::to_string(head.embed.rows()));
    x.row(t) = head.embed.row(ids[t]);
  }
  return x;
}

// One head of causal attention: softmax(q kᵀ / sqrt(hd)) v over positions <= t.
static void attention_head(const Eigen::Ref<const Mat>& qh, const Eigen::Ref<const Mat>& kh,
                           const Eigen::Ref<const Mat>& vh, float scale, Eigen::Ref<Mat> out) {
  const Eigen::Index T = qh.rows();
  Mat scores(T, T);
  scores.triangularView<Eigen::Lower>() = (qh * kh.transpose()) * scale;
  for (Eigen::Index t = 0; t < T; ++t) {
    auto row = scores.row(t).head(t + 1).array();
    const float mx = row.maxCoeff();
    row = (row - mx).exp();  // vectorised; masked positions are never computed
    row /= row.sum();
  }
  out.noalias() = scores.triangularView<Eigen::Lower>() * vh;
}

// Causal grouped-query attention; q [T, H*hd], k/v [T, KV*hd] -> [T, H*hd]. Heads run in
// parallel when the caller is not already parallel (generation); each head's result does not
// depend on the thread that computes it.
static Mat attention(const ModelConfig& cfg, const Mat& q, const Mat& k, const Mat& v) {
  const int hd = cfg.head_dim, group = cfg.num_heads / cfg.num_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  Mat out(q.rows(), Eigen::Index(cfg.num_heads) * hd);
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && q.rows() >= 64)
  for (int h = 0; h < cfg.num_heads; ++h) {
    const int kvh = h / group;
    attention_head(q.middleCols(h * hd, hd), k.middleCols(kvh * hd, hd),
                   v.middleCols(kvh * hd, hd), scale, out.middleCols(h * hd, hd));
  }
  return out;
}

// Queries of positions start .. start+n-1 against the keys and values of positions 0 .. start+n-1
// (the cached prefix and themselves): query t sees positions <= start + t.
static void attention_head_after(const Eigen::Ref<const Mat>& qh, const Eigen::Ref<const Mat>& kh,
                                 const Eigen::Ref<const Mat>& vh, float scale, Eigen::Index start,
                                 Eigen::Ref<Mat> out) {
  Mat scores = (qh * kh.transpose()) * scale;
  for (Eigen::Index t = 0; t < qh.rows(); ++t) {
    const Eigen::Index seen = start + t + 1;
    auto row = scores.row(t).head(seen).array();
    const float mx = row.maxCoeff();
    row = (row - mx).exp();
    row /= row.sum();
    out.row(t).noalias() = scores.row(t).head(seen) * vh.topRows(seen);
  }
}

static Mat attention_after(const ModelConfig& cfg, const Mat& q, const Mat& k, const Mat& v, Eigen::Index start) {
  const int hd = cfg.head_dim, group = cfg.num_heads / cfg.num_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  Mat out(q.rows(), Eigen::Index(cfg.num_heads) * hd);
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && k.rows() >= 64)
  for (int h = 0; h < cfg.num_heads; ++h) {
    const int kvh = h / group;
    attention_head_after(q.middleCols(h * hd, hd), k.middleCols(kvh * hd, hd), v.middleCols(kvh * hd, hd), scale,
                         start, out.middleCols(h * hd, hd));
  }
  return out;
}

// The feed-forward half of a block on x in place. Returns true, x unspecified, when `emit` asks
// to stop after an input.
Mat swiglu(const Linear& gate, const Linear& up, const Mat& n) {
  Mat g = gate.forward(n);
  Mat u = up.forward(n);
  // silu(g) = g / (1 + e^-g).
  return (g.array() / (1.0f + (-g.array()).exp()) * u.array()).matrix();
}

// R3 and the cache's quantization, on queries and keys after RoPE and on values.
static void quantize_cached(const ModelConfig& cfg, const KvQuant& kv, Mat& q, Mat& k, Mat& v) {
  if (!kv.enabled() && !kv.hadamard) return;
  if (kv.hadamard) {
    InputTransform t;
    t.factors = hadamard_factors(cfg.head_dim);
    PTQ_ASSERT(!t.factors.empty(), "the loader refuses kv(...,hadamard) for head sizes without a Hadamard matrix");
    t.size = int(q.cols());
    q = t.apply(q);
    t.size = int(k.cols());
    k = t.apply(k);
  }
  quantize_kv(k, kv, cfg.head_dim);
  quantize_kv(v, kv, cfg.head_dim);
}

Mat attention_context(const ModelConfig& cfg, const RopeTable& rope, const KvQuant& kv, const Linear& q_proj,
                      const Linear& k_proj, const Linear& v_proj, const Mat& n) {
  Mat q = q_proj.forward(n);
  Mat k = k_proj.forward(n);
  Mat v = v_proj.forward(n);
  rope.apply(q, cfg.num_heads);
  rope.apply(k, cfg.num_kv_heads);
  quantize_cached(cfg, kv, q, k, v);
  return attention(cfg, q, k, v);
}

template <class Emit>
static bool ffn_residual(const ModelConfig& cfg, const BlockWeights& w, Mat& x, Mat& n, Emit&& emit) {
  rms_norm_rows(x, w.ffn_norm, cfg.rms_norm_eps, n);
  if (emit(LinearInput::kGateUp, n)) return true;
  Mat m = swiglu(w.gate, w.up, n);
  if (emit(LinearInput::kDown, m)) return true;
  x += w.down.forward(m);
  return false;
}

void block_forward(const ModelConfig& cfg, const BlockWeights& w, const RopeTable& rope, Mat& x,
                   const CaptureFn& capture, std::optional<LinearInput> stop_after) {
  auto emit = [&](LinearInput g, const Mat& in) {
    if (capture) capture(g, in);
    return stop_after == g;
  };
  Mat n;
  rms_norm_rows(x, w.attn_norm, cfg.rms_norm_eps, n);
  if (emit(LinearInput::kQKV, n)) return;
  Mat a = attention_context(cfg, rope, w.kv, w.q, w.k, w.v, n);
  if (emit(LinearInput::kO, a)) return;
  x += w.o.forward(a);
  ffn_residual(cfg, w, x, n, emit);
}

// One block on the new positions x [n, hidden] starting at `start`, reading and extending the
// block's cached keys and values. With start 0 the arithmetic is block_forward's.
static void block_forward_cached(const ModelConfig& cfg, const BlockWeights& w, const RopeTable& rope, Mat& x,
                                 Mat& k_cache, Mat& v_cache, Eigen::Index start) {
  Mat n;
  rms_norm_rows(x, w.attn_norm, cfg.rms_norm_eps, n);
  Mat q = w.q.forward(n);
  Mat k = w.k.forward(n);
  Mat v = w.v.forward(n);
  rope.apply(q, cfg.num_heads, start);
  rope.apply(k, cfg.num_kv_heads, start);
  quantize_cached(cfg, w.kv, q, k, v);
  k_cache.middleRows(start, k.rows()) = k;
  v_cache.middleRows(start, v.rows()) = v;
  const Eigen::Index seen = start + x.rows();
  Mat a = start == 0 ? attention(cfg, q, k, v)
                     : attention_after(cfg, q, k_cache.topRows(seen), v_cache.topRows(seen), start);
  x += w.o.forward(a);
  ffn_residual(cfg, w, x, n, [](LinearInput, const Mat&) { return false; });
}

Mat final_logits(const ModelConfig& cfg, const HeadWeights& head, const Mat& x) {
  Mat n;
  rms_norm_rows(x, head.final_norm, cfg.rms_norm_eps, n);
  round_inputs(n, head.lm_head_rounding);
  return n * head.lm_head.transpose();
}

static std::vector<BlockWeights> load_blocks(const Model& model) {
  std::vector<BlockWeights> blocks;
  for (int l = 0; l < model.config().num_layers; ++l) blocks.push_back(BlockWeights::load(model, l));
  return blocks;
}

LlamaModel::LlamaModel(const Model& model)
    : LlamaModel(model.config(), HeadWeights::load(model), load_blocks(model)) {}

LlamaModel::LlamaModel(ModelConfig cfg, HeadWeights head, std::vector<BlockWeights> blocks)
    : cfg_(std::move(cfg)),
      head_(std::move(head)),
      blocks_(std::move(blocks)),
      rope_(cfg_) {}

Mat LlamaModel::logits(const std::vector<int32_t>& ids) const {
  Mat x = embed_tokens(head_, ids);
  for (const auto& b : blocks_) block_forward(cfg_, b, rope_, x);
  return final_logits(cfg_, head_, x);
}

KvCache::KvCache(const ModelConfig& cfg, int capacity) : capacity_(capacity) {
  PTQ_ASSERT(capacity >= 0);
  const Eigen::Index width = Eigen::Index(cfg.num_kv_heads) * cfg.head_dim;
  k_.assign(size_t(cfg.num_layers), Mat(capacity, width));
  v_.assign(size_t(cfg.num_layers), Mat(capacity, width));
}

Mat LlamaModel::logits_cached(const std::vector<int32_t>& new_ids, KvCache& cache) const {
  PTQ_ASSERT(cache.k_.size() == blocks_.size(), "KvCache made for another model");
  if (cache.length_ + int64_t(new_ids.size()) > cache.capacity_)
    throw Error("generation of " + std::to_string(cache.length_ + new_ids.size()) +
                " positions exceeds the cache's " + std::to_string(cache.capacity_));
  Mat x = embed_tokens(head_, new_ids);
  for (size_t l = 0; l < blocks_.size(); ++l)
    block_forward_cached(cfg_, blocks_[l], rope_, x, cache.k_[l], cache.v_[l], cache.length_);
  cache.length_ += int(new_ids.size());
  return final_logits(cfg_, head_, x);
}

double sequence_nll(const Mat& logits, const std::vector<int32_t>& ids, int first_scored) {
  PTQ_ASSERT(logits.rows() == Eigen::Index(ids.size()));
  double nll = 0;
  for (size_t t = size_t(std::max(first_scored, 1)); t < ids.size(); ++t) {
    auto row = logits.row(Eigen::Index(t) - 1);
    double mx = row.maxCoeff();
    double sum = 0;
    for (Eigen::Index j = 0; j < row.size(); ++j) sum += std::exp(double(row(j)) - mx);
    nll += (mx + std::log(sum)) - double(row(ids[t]));
  }
  return nll;
}

}  // namespace ptq
