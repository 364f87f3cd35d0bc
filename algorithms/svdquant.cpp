// SVDQuant (Li et al. 2024, mit-han-lab/deepcompressor; ../shared/design/algorithms-reference.md
// §5.1) as a transform stage before the recipe's quantizer:
//   1. smoothing, SmoothQuant's per-input-channel λ_k = max|x_k|^α / max|W_:k|^(1−α) (max over
//      the group's layers), folded into the RMSNorm gain or the linear layer producing the input
//      (channel_fold.h), so the layers read x/λ with weights W·diag(λ) and activation outliers
//      move into the weights;
//   2. the top-r SVD of each smoothed weight kept as an fp16 branch L1·L2 (plain Frobenius by
//      default, as the reference's first iterate; `hessian`/`diag` weight it by the input), and
//      the residual W·diag(λ) − L1·L2 left for the quantizer (`svdquant(r32)+gptq(w4,g64)`).
// The branch rides on the Linear until the pipeline quantizes the layer and attaches it as the
// QuantizedLayer's low-rank part (concatenated with a refiner's, e.g. lorc). At inference the
// branch takes the unquantized input: with `act(a4)` only the residual's product sees 4-bit
// activations, as SVDQuant runs it. Where the scale cannot be folded (an online input transform,
// grouped-query v→o) the group keeps its branch without smoothing, and says so in the log. Spec
//   svdquant(r32[,alpha=0.5][,hessian|diag|plain][,damp=][,svd=auto|exact|randomized][,seed=0])
// docs/low_rank.md.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"  // GCC bug 105329 in std::string concatenation
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "algorithms/channel_fold.h"
#include "algorithms/low_rank.h"
#include "ptq/error.h"

namespace ptq {
namespace {

constexpr LowRankWeight kDefaultWeight = LowRankWeight::kNone;
constexpr double kDefaultAlpha = 0.5;

// λ_k = max|x_k|^α / max_i |W_ik|^(1−α) over the group's layers; 1 where either is 0.
Vec smoothing_scales(const GroupContext& g, double alpha) {
  const VecD x_max = g.stats->max_abs();
  VecD w_max = VecD::Zero(g.stats->k());
  for (const Linear* l : g.layers)
    w_max = w_max.cwiseMax(l->w.cwiseAbs().colwise().maxCoeff().transpose().cast<double>());
  Vec s(g.stats->k());
  for (int c = 0; c < s.size(); ++c)
    s[c] = x_max[c] > 0 && w_max[c] > 0 ? float(std::pow(x_max[c], alpha) / std::pow(w_max[c], 1.0 - alpha)) : 1.0f;
  return s;
}

// Why the group's input is not smoothed, or "".
std::string smoothing_blocker(const GroupContext& g) {
  if (std::string b = fold_blocker(g, g.stats->k()); !b.empty()) return b;
  if (g.stats->tokens() == 0) return "no calibration inputs";
  if (!g.stats->has_mean_abs()) return "the input statistics are of a transformed input";
  return "";
}

class SvdQuant final : public WeightTransform {
 public:
  explicit SvdQuant(const Spec& spec) : o_(low_rank_options(spec, kDefaultWeight)) {
    alpha_ = spec.double_value("alpha", kDefaultAlpha);
    spec.check_all_used();
    if (!(alpha_ >= 0 && alpha_ <= 1))
      throw Error("spec '" + spec.to_string() + "': alpha must be in [0, 1], got " + spec_number(alpha_));
  }
  std::string spec() const override {
    std::string s = "svdquant(" + low_rank_spec_args(o_, kDefaultWeight);
    if (alpha_ != kDefaultAlpha) s += ",alpha=" + spec_number(alpha_);
    return s + ")";
  }

  void apply(GroupContext& g, QuantLog* log) const override {
    PTQ_ASSERT(g.stats && !g.layers.empty() && g.layers.size() == g.names.size());
    for (size_t i = 0; i < g.layers.size(); ++i) {
      if (g.layers[i]->w.size() == 0)
        throw Error("svdquant: layer '" + g.names[i] +
                    "' has no dense weights (packed checkpoints cannot be transformed)");
      if (g.layers[i]->branch) throw Error("svdquant: layer '" + g.names[i] + "' already has a low-rank branch");
    }
    std::string msg = "svdquant " + g.input_name + ":";
    if (const std::string blocker = smoothing_blocker(g); blocker.empty()) {
      const Vec s = smoothing_scales(g, alpha_);
      fold_scales(g, s);
      char buf[96];
      std::snprintf(buf, sizeof buf, " smoothing alpha=%g, lambda in [%.3g, %.3g];", alpha_, double(s.minCoeff()),
                    double(s.maxCoeff()));
      msg += buf;
    } else {
      msg += " no smoothing (" + blocker + ");";
    }
    if (o_.weight != LowRankWeight::kNone && g.stats->tokens() == 0)
      throw Error("svdquant: the " + g.input_name +
                  " branch fit is input-weighted but there are no calibration inputs");
    const MatD* h = o_.weight == LowRankWeight::kNone ? nullptr : &g.stats->hessian();
    QuantLog inner;
    for (size_t i = 0; i < g.layers.size(); ++i) {
      Linear& l = *g.layers[i];
      const LowRankFit fit = fit_low_rank(l.w.cast<double>(), h, o_, &inner);
      LowRankBranch b = fp16_branch(fit);
      l.w -= b.product();
      char buf[96];
      const std::string layer = g.names[i].substr(g.names[i].rfind('.') + 1);
      std::snprintf(buf, sizeof buf, " %s rank-%d branch leaves %.3g;", layer.c_str(), b.rank(),
                    fit.initial > 0 ? fit.residual / fit.initial : 0.0);
      msg += buf;
      l.branch = std::make_shared<const LowRankBranch>(std::move(b));
    }
    if (log) {
      log->messages.push_back(msg);
      log->messages.insert(log->messages.end(), inner.messages.begin(), inner.messages.end());
    }
  }

 private:
  LowRankOptions o_;
  double alpha_ = kDefaultAlpha;
};

const TransformRegistrar kRegister("svdquant", [](const Spec& s) -> std::unique_ptr<WeightTransform> {
  return std::make_unique<SvdQuant>(s);
});

}  // namespace
}  // namespace ptq
