// The "rot" transform stage: QuaRot/SpinQuant-style rotations folded into the weights, and an
// optional online Hadamard (docs/rotation.md).
//
//   rot(hadamard|random[,seed=N][,online])
//
// With Q [d, d] orthogonal on the residual stream (row vectors, h → h·Q) and RMSNorm gains g
// fused into the layers after them (RMSNorm without a gain commutes with Q: ‖h·Q‖ = ‖h‖):
//   R1  embed ← E·Q; q/k/v/gate/up ← W·diag(g)·Q; o/down ← Qᵀ·W; lm_head ← W·diag(g_final)·Q;
//       every gain ← 1. A tied lm_head becomes a tensor of its own unless the final gain is 1.
//   R2  P [hd, hd], the same for every head (grouped-query attention shares a v head between
//       several o_proj column blocks): v_proj rows of each kv head ← Pᵀ·W (and its bias), o_proj
//       columns of each head ← W·P.
//   R4  (`online`) x → x·H on down_proj's input, applied online: an input transform of the layer
//       (only formats that carry input transforms take it: ptq, fake).
// `hadamard`: diag(±1)·H/√n with H a Kronecker product of a power of two and Paley factors
// (576 = 4·12·12, 768 = 64·12, 1536 = 128·12); a size with none gets a Haar-random orthogonal
// matrix instead, and the log says so. `random`: Haar-random orthogonal matrices (QR of a
// Gaussian matrix). Signs and Gaussians come from std::mt19937_64 seeded by `seed` and the
// rotation's role, so a recipe string fixes every bit of the output.
// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329) and false
// -Wmaybe-uninitialized inside Eigen's kernels.
#pragma GCC diagnostic ignored "-Wrestrict"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/QR>
#include <cmath>
#include <map>
#include <mutex>
#include <numbers>
#include <random>
#include <tuple>

#include "ptq/error.h"
#include "ptq/stages.h"

namespace ptq {
namespace {

enum class RotationKind { kHadamard, kRandom };

struct RotationOptions {
  RotationKind kind = RotationKind::kHadamard;
  uint64_t seed = 0;
  bool online = false;  // R4
};

// Streams of the three rotations: one seed gives independent signs for each.
enum class Role : uint64_t { kResidual = 1, kHead = 2, kDownInput = 3 };

std::mt19937_64 rng_for(uint64_t seed, Role role) {
  return std::mt19937_64(seed * 0x9E3779B97F4A7C15ull + uint64_t(role));
}

// Box–Muller on the engine's bits: std::normal_distribution differs between standard libraries.
double gaussian(std::mt19937_64& rng) {
  const double u1 = (double(rng() >> 11) + 1.0) * 0x1.0p-53, u2 = double(rng() >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// Haar-random orthogonal [n, n]: Q of the QR of a Gaussian matrix, columns signed by R's diagonal.
InputTransform random_orthogonal(int n, std::mt19937_64& rng) {
  Eigen::MatrixXd a(n, n);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) a(i, j) = gaussian(rng);
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
  Eigen::MatrixXd q = qr.householderQ();
  for (int j = 0; j < n; ++j)
    if (qr.matrixQR()(j, j) < 0) q.col(j) = -q.col(j);
  InputTransform t;
  t.kind = InputTransform::Kind::kDense;
  t.size = n;
  t.dense = q.cast<float>();
  return t;
}

// The rotation of `block`-wide blocks repeated over `size` (block == size: one full rotation).
// Returns nullopt when the kind is hadamard and `block` has no Kronecker factors.
std::optional<InputTransform> hadamard(int block, int size, std::mt19937_64& rng) {
  InputTransform t;
  t.kind = InputTransform::Kind::kHadamard;
  t.size = size;
  t.factors = hadamard_factors(block);
  if (t.factors.empty()) return std::nullopt;
  std::vector<int8_t> signs(static_cast<size_t>(block));
  for (auto& s : signs) s = (rng() >> 63) ? int8_t(-1) : int8_t(1);
  for (int b = 0; b < size; b += block) t.signs.insert(t.signs.end(), signs.begin(), signs.end());
  return t;
}

// A dense block-diagonal T of `size` with `block` on its diagonal.
InputTransform block_diagonal(const InputTransform& block, int size) {
  InputTransform t = block;
  t.size = size;
  t.dense = Mat::Zero(size, size);
  for (int b = 0; b < size; b += block.size) t.dense.block(b, b, block.size, block.size) = block.dense;
  return t;
}

std::string describe(const InputTransform& t) {
  if (t.kind != InputTransform::Kind::kHadamard) return "random orthogonal";
  std::string f;
  for (int x : t.factors) f += (f.empty() ? "" : "x") + std::to_string(x);
  return "Hadamard " + f;
}

struct Rotation {
  InputTransform t;
  std::string note;  // why it is not the kind asked for, or ""
};

// A rotation of `block`-wide blocks over `size`, of the asked kind where it exists.
Rotation make_rotation(const RotationOptions& o, Role role, int block, int size) {
  std::mt19937_64 rng = rng_for(o.seed, role);
  if (o.kind == RotationKind::kHadamard) {
    if (auto h = hadamard(block, size, rng)) return {*h, ""};
    rng = rng_for(o.seed, role);
    Rotation r{block_diagonal(random_orthogonal(block, rng), size), ""};
    r.note = std::to_string(block) + " has no Hadamard matrix of Kronecker factors ptq knows (a power of two "
             "times Paley orders q+1, q ≡ 3 mod 4 prime): a random orthogonal matrix instead";
    return r;
  }
  return {block_diagonal(random_orthogonal(block, rng), size), ""};
}

// Rows of w through T: w·T (a layer reading the rotated stream).
Mat rotate_inputs(const InputTransform& t, const Mat& w) { return t.apply(w); }
// Tᵀ·w: a layer whose outputs y become y·T.
Mat rotate_outputs(const InputTransform& t, const Mat& w) {
  const Mat wt = w.transpose();
  return t.apply(wt).transpose();
}
Vec rotate_vector(const InputTransform& t, const Vec& v) {
  const Mat row = v.transpose();
  return t.apply(row).transpose();
}

Mat times_gain(const Mat& w, const Vec& g) { return w * g.asDiagonal(); }

void require_dense(const Linear& l, const std::string& name) {
  if (l.w.size() == 0) throw Error("rot: " + name + " has no dense weights (packed checkpoints cannot be rotated)");
}

class Rotate final : public WeightTransform {
 public:
  explicit Rotate(const RotationOptions& o) : o_(o) {}

  std::string spec() const override {
    std::string s = std::string("rot(") + (o_.kind == RotationKind::kHadamard ? "hadamard" : "random");
    if (o_.seed != 0) s += ",seed=" + std::to_string(o_.seed);
    if (o_.online) s += ",online";
    return s + ")";
  }
  bool needs_stats() const override { return false; }
  bool rewrites_model() const override { return true; }

  void rewrite_head(const ModelConfig& cfg, HeadWeights& head, QuantLog* log) const override {
    const Rotation& r1 = residual(cfg);
    const bool tied_before = cfg.tie_word_embeddings;
    head.embed = rotate_inputs(r1.t, head.embed);
    head.lm_head = rotate_inputs(r1.t, times_gain(head.lm_head, head.final_norm));
    head.final_norm = Vec::Ones(head.final_norm.size());
    if (!log) return;
    const Rotation& r2 = per_head(cfg);
    log->messages.push_back("rot: R1 " + describe(r1.t) + " on the residual stream (" +
                            std::to_string(cfg.hidden_size) + "), RMSNorm gains fused into the layers after them; R2 " + describe(r2.t) +
                            " per head (" + std::to_string(cfg.head_dim) + ") on v_proj/o_proj" +
                            (o_.online ? "; R4 online on down_proj's input" : ""));
    for (const Rotation* r : {&r1, &r2})
      if (!r->note.empty()) log->messages.push_back("rot: " + r->note);
    if (tied_before && head.lm_head != head.embed)
      log->messages.push_back("rot: the tied lm_head is written as its own tensor (the final RMSNorm gain is "
                              "fused into it, not into the embedding)");
  }

  void rewrite_block(const ModelConfig& cfg, int layer, BlockWeights& w) const override {
    const std::string p = layer_prefix(layer);
    for (const char* name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      require_dense(*w.linear(name), p + name);
    const Rotation& r1 = residual(cfg);
    for (Linear* l : {&w.q, &w.k, &w.v}) l->w = rotate_inputs(r1.t, times_gain(l->w, w.attn_norm));
    for (Linear* l : {&w.gate, &w.up}) l->w = rotate_inputs(r1.t, times_gain(l->w, w.ffn_norm));
    w.attn_norm = Vec::Ones(w.attn_norm.size());
    w.ffn_norm = Vec::Ones(w.ffn_norm.size());
    const Rotation& v_rows = per_head(cfg, cfg.num_kv_heads);
    const Rotation& o_cols = per_head(cfg, cfg.num_heads);
    w.v.w = rotate_outputs(v_rows.t, w.v.w);
    if (w.v.bias.size()) w.v.bias = rotate_vector(v_rows.t, w.v.bias);
    w.o.w = rotate_outputs(r1.t, rotate_inputs(o_cols.t, w.o.w));
    w.down.w = rotate_outputs(r1.t, w.down.w);
  }

  void apply(GroupContext& group, QuantLog* log) const override {
    if (!o_.online || group.input != LinearInput::kDown) return;
    const int k = group.stats->k();
    const Rotation& r4 = rotation(Role::kDownInput, k, k);
    attach_input_transform(group, r4.t);
    if (!log) return;
    log->messages.push_back("rot: R4 " + describe(r4.t) + " online on the input (" + std::to_string(k) + ")");
    if (!r4.note.empty()) log->messages.push_back("rot: " + r4.note);
  }

 private:
  const Rotation& residual(const ModelConfig& cfg) const {
    return rotation(Role::kResidual, cfg.hidden_size, cfg.hidden_size);
  }
  const Rotation& per_head(const ModelConfig& cfg, int heads = 1) const {
    return rotation(Role::kHead, cfg.head_dim, cfg.head_dim * heads);
  }
  // Built once per shape, not per block: rot(random)'s QR is O(d³), and every block needs the
  // same matrices (each depends only on the seed, its role and its size).
  const Rotation& rotation(Role role, int block, int size) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto key = std::make_tuple(role, block, size);
    auto it = cache_.find(key);
    if (it == cache_.end()) it = cache_.emplace(key, make_rotation(o_, role, block, size)).first;
    return it->second;
  }

  RotationOptions o_;
  mutable std::mutex mutex_;
  mutable std::map<std::tuple<Role, int, int>, Rotation> cache_;
};

RotationOptions rotation_options(const Spec& spec) {
  const std::string where = "spec '" + spec.to_string() + "'";
  RotationOptions o;
  const bool h = spec.flag("hadamard"), r = spec.flag("random");
  if (h == r)
    throw Error(where + ": rot needs exactly one rotation kind: rot(hadamard) (random-sign Hadamard) or "
                "rot(random) (random orthogonal)");
  o.kind = h ? RotationKind::kHadamard : RotationKind::kRandom;
  const int seed = spec.int_value("seed", 0);
  if (seed < 0) throw Error(where + ": seed must be a non-negative integer");
  o.seed = uint64_t(seed);
  o.online = spec.flag("online");
  spec.check_all_used();
  return o;
}

const TransformRegistrar kRegister("rot", [](const Spec& s) -> std::unique_ptr<WeightTransform> {
  return std::make_unique<Rotate>(rotation_options(s));
});

}  // namespace
}  // namespace ptq
