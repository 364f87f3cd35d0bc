// LoRC (ZeroQuant-V2, arXiv 2303.08302; ../shared/design/algorithms-reference.md §5.2), as a
// refiner after any quantizer: the rank-r branch L1·L2 fitted to the quantization error
// E = W − Ŵ, minimising ‖E − L‖_F as the paper states it, or with `hessian` the layer's output
// error tr((E − L) H (E − L)ᵀ) (`diag`: its diagonal). The default is the paper's because it
// measured better on both real models (docs/low_rank.md). Factors fp16, stored as the layer's
// low-rank part and added by the composed kernel. Spec
//   lorc(r32[,hessian|diag|plain][,damp=0.01][,svd=auto|exact|randomized][,seed=0])
// docs/low_rank.md.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"  // GCC bug 105329 in std::string concatenation
#include <chrono>
#include <cstdio>

#include "algorithms/low_rank.h"
#include "ptq/error.h"

namespace ptq {
namespace {

constexpr LowRankWeight kDefaultWeight = LowRankWeight::kNone;

class Lorc final : public LayerRefiner {
 public:
  explicit Lorc(const Spec& spec) : o_(low_rank_options(spec, kDefaultWeight)) { spec.check_all_used(); }
  std::string spec() const override { return "lorc(" + low_rank_spec_args(o_, kDefaultWeight) + ")"; }
  bool needs_stats() const override { return o_.weight != LowRankWeight::kNone; }
  void refine(const WeightQuantizer&, const Mat& w, const InputStats* stats, QuantizedLayer& q,
              QuantLog* log) const override {
    const auto t0 = std::chrono::steady_clock::now();
    if (q.low_rank) throw Error("lorc: the layer already has a low-rank branch (" + q.part_names() + ")");
    if (needs_stats() && (!stats || stats->tokens() == 0))
      throw Error("lorc: the H-weighted fit needs calibration inputs, got none (lorc(...,plain), the default, needs none)");
    const MatD e = w.cast<double>() - q.stored_weight().cast<double>();
    const LowRankFit fit = fit_low_rank(e, needs_stats() ? &stats->hessian() : nullptr, o_, log);
    q.low_rank = fp16_branch(fit);
    if (log) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "lorc: the rank-%d branch leaves %.4g of the %s error (%s SVD)", q.low_rank->rank(),
                    fit.initial > 0 ? fit.residual / fit.initial : 0.0,
                    o_.weight == LowRankWeight::kNone ? "Frobenius" : "weighted", fit.randomized ? "randomized" : "exact");
      log->messages.push_back(buf);
      log->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }

 private:
  LowRankOptions o_;
};

const RefinerRegistrar kRegister("lorc", [](const Spec& s) -> std::unique_ptr<LayerRefiner> {
  return std::make_unique<Lorc>(s);
});

}  // namespace
}  // namespace ptq
