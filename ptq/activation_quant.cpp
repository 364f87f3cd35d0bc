// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include "ptq/activation_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ptq/error.h"
#include "ptq/stages.h"

namespace ptq {
namespace {

bool row_finite(const float* p, int n) {
  for (int j = 0; j < n; ++j)
    if (!std::isfinite(p[j])) return false;
  return true;
}

RowGrid quantize_row_sym(const float* p, int n, int bits, float clip, int16_t* q) {
  float m = 0;
  for (int j = 0; j < n; ++j) m = std::max(m, std::fabs(p[j]));
  m *= clip;
  std::fill(q, q + n, int16_t(0));
  if (m == 0) return {};
  const float maxq = float((1 << (bits - 1)) - 1), s = m / maxq;
  for (int j = 0; j < n; ++j) q[j] = int16_t(std::clamp(std::nearbyint(p[j] / s), -maxq - 1, maxq));
  return {s, 0};
}

RowGrid quantize_row_asym(const float* p, int n, int bits, float clip, int16_t* q) {
  float lo = 0, hi = 0;
  for (int j = 0; j < n; ++j) {
    lo = std::min(lo, p[j]);
    hi = std::max(hi, p[j]);
  }
  lo *= clip;
  hi *= clip;
  std::fill(q, q + n, int16_t(0));
  if (hi == lo) return {};
  const float maxq = float((1 << bits) - 1), s = (hi - lo) / maxq, z = std::nearbyint(-lo / s);
  for (int j = 0; j < n; ++j) q[j] = int16_t(std::clamp(std::nearbyint(p[j] / s) + z, 0.0f, maxq));
  return {s, int(z)};
}

// The stages themselves only mark the recipe; ptq eval and the loader read them back from there.
class RuntimeStage final : public WeightTransform {
 public:
  explicit RuntimeStage(std::string spec) : spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }
  void apply(GroupContext&, QuantLog*) const override {}
  bool needs_stats() const override { return false; }

 private:
  std::string spec_;
};

const TransformRegistrar kAct("act", [](const Spec& s) -> std::unique_ptr<WeightTransform> {
  return std::make_unique<RuntimeStage>(activation_quant_spec(activation_quant_from_spec(s)));
});
const TransformRegistrar kKv("kv", [](const Spec& s) -> std::unique_ptr<WeightTransform> {
  return std::make_unique<RuntimeStage>(kv_quant_spec(kv_quant_from_spec(s)));
});

}  // namespace

RowGrid quantize_row_codes(const float* x, int n, const ActivationQuant& a, int16_t* q) {
  PTQ_ASSERT(a.enabled() && a.bits <= 8, "activation bits in 1..8");
  if (!row_finite(x, n)) {
    std::fill(q, q + n, int16_t(0));
    return {std::numeric_limits<float>::quiet_NaN(), 0};
  }
  return a.asym ? quantize_row_asym(x, n, a.bits, float(a.clip), q) : quantize_row_sym(x, n, a.bits, float(a.clip), q);
}

namespace {

void fake_quantize_row(float* p, int n, const ActivationQuant& a, int16_t* q) {
  const RowGrid g = quantize_row_codes(p, n, a, q);
  for (int j = 0; j < n; ++j) p[j] = g.scale * float(q[j] - g.zero);
}

}  // namespace

void quantize_activations(Mat& x, const ActivationQuant& a) {
  if (!a.enabled()) return;
  const int n = int(x.cols());
  std::vector<int16_t> q(static_cast<size_t>(n));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    float* p = x.data() + r * n;
    fake_quantize_row(p, n, a, q.data());
  }
}

namespace {

// The bits of an act/kv stage, its letter-keyed argument `key`, in 2..8.
int stage_bits(const Spec& spec, const std::string& stage, const std::string& key, const std::string& what) {
  const std::string where = "spec '" + spec.to_string() + "'";
  if (spec.name != stage) throw Error(where + ": not a " + stage + "(...) stage");
  const int bits = spec.int_value(key, 0);
  if (bits < 2 || bits > 8)
    throw Error(where + ": " + stage + " needs the " + what + " bits, " + key + "2.." + key + "8 (e.g. " + stage + "(" +
                key + "4))");
  return bits;
}

}  // namespace

ActivationQuant activation_quant_from_spec(const Spec& spec) {
  ActivationQuant a;
  a.bits = stage_bits(spec, "act", "a", "activation");
  a.asym = spec.flag("asym");
  a.clip = spec.double_value("clip", 1.0);
  if (!(a.clip > 0 && a.clip <= 1)) throw Error("spec '" + spec.to_string() + "': clip must be in (0, 1]");
  spec.check_all_used();
  return a;
}

std::string activation_quant_spec(const ActivationQuant& a) {
  if (!a.enabled()) return "none";
  std::string s = "act(a" + std::to_string(a.bits);
  if (a.asym) s += ",asym";
  if (a.clip != 1.0) s += ",clip=" + spec_number(a.clip);
  return s + ")";
}

ActivationQuant recipe_activation_quant(const std::vector<Spec>& recipe) { return recipe_runtime_quant(recipe).act; }

void quantize_kv(Mat& x, const KvQuant& kv, int head_dim) {
  if (kv.bits == 0) return;
  PTQ_ASSERT(x.cols() % head_dim == 0);
  const ActivationQuant per_head{kv.bits, !kv.sym, 1.0};
  std::vector<int16_t> q(static_cast<size_t>(head_dim));
  const Eigen::Index n = x.cols();
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (Eigen::Index h = 0; h < n; h += head_dim) {
      float* p = x.data() + r * n + h;
      fake_quantize_row(p, head_dim, per_head, q.data());
    }
}

KvQuant kv_quant_from_spec(const Spec& spec) {
  KvQuant kv;
  kv.bits = stage_bits(spec, "kv", "b", "cache");
  kv.sym = spec.flag("sym");
  kv.hadamard = spec.flag("hadamard");
  spec.check_all_used();
  return kv;
}

std::string kv_quant_spec(const KvQuant& kv) {
  if (kv.bits == 0) return "none";
  std::string s = "kv(b" + std::to_string(kv.bits);
  if (kv.sym) s += ",sym";
  if (kv.hadamard) s += ",hadamard";
  return s + ")";
}

std::string RuntimeQuant::spec() const {
  std::string s;
  if (act.enabled()) s = activation_quant_spec(act);
  if (kv.enabled()) s += (s.empty() ? "" : "+") + kv_quant_spec(kv);
  return s.empty() ? "none" : s;
}

RuntimeQuant recipe_runtime_quant(const std::vector<Spec>& recipe) {
  RuntimeQuant out;
  int acts = 0, kvs = 0;
  for (const Spec& s : recipe) {
    if (s.name == "act") {
      out.act = activation_quant_from_spec(s);
      ++acts;
    } else if (s.name == "kv") {
      out.kv = kv_quant_from_spec(s);
      ++kvs;
    }
  }
  if (acts > 1 || kvs > 1)
    throw Error("recipe '" + recipe_to_string(recipe) + "' has more than one " + (acts > 1 ? "act" : "kv") +
                "(...) stage");
  return out;
}

RuntimeQuant parse_runtime_quant(const std::string& text) {
  if (text == "none") return {};
  const std::vector<Spec> specs = parse_recipe(text);
  for (const Spec& s : specs)
    if (s.name != "act" && s.name != "kv")
      throw Error("'" + text + "': expected none or act(...)/kv(...) stages joined by '+', not '" + s.name + "'");
  return recipe_runtime_quant(specs);
}

}  // namespace ptq
