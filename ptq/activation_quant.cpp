// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include "ptq/activation_quant.h"

#include <algorithm>
#include <cmath>

#include "ptq/error.h"
#include "ptq/stages.h"

namespace ptq {
namespace {

void quantize_row_sym(float* p, int n, int bits, float clip) {
  float m = 0;
  for (int j = 0; j < n; ++j) m = std::max(m, std::fabs(p[j]));
  m *= clip;
  if (m == 0) return;
  const float maxq = float((1 << (bits - 1)) - 1), s = m / maxq;
  for (int j = 0; j < n; ++j) p[j] = s * std::clamp(std::nearbyint(p[j] / s), -maxq - 1, maxq);
}

void quantize_row_asym(float* p, int n, int bits, float clip) {
  float lo = 0, hi = 0;
  for (int j = 0; j < n; ++j) {
    lo = std::min(lo, p[j]);
    hi = std::max(hi, p[j]);
  }
  lo *= clip;
  hi *= clip;
  if (hi == lo) return;
  const float maxq = float((1 << bits) - 1), s = (hi - lo) / maxq, z = std::nearbyint(-lo / s);
  for (int j = 0; j < n; ++j) p[j] = s * (std::clamp(std::nearbyint(p[j] / s) + z, 0.0f, maxq) - z);
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

void quantize_activations(Mat& x, const ActivationQuant& a) {
  if (!a.enabled()) return;
  const int n = int(x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    float* p = x.data() + r * n;
    if (a.asym) quantize_row_asym(p, n, a.bits, float(a.clip));
    else quantize_row_sym(p, n, a.bits, float(a.clip));
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
  const Eigen::Index n = x.cols();
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (Eigen::Index h = 0; h < n; h += head_dim) {
      float* p = x.data() + r * n + h;
      if (kv.sym) quantize_row_sym(p, head_dim, kv.bits, 1.0f);
      else quantize_row_asym(p, head_dim, kv.bits, 1.0f);
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
