// LQ-LoRA-style decomposition (Guo et al. 2023, HanGuo97/lq-lora `lowrank_quantized_sparse_
// decomposition`; ../shared/design/algorithms-reference.md §5.3) as a refiner that alternates
// with the recipe's own quantizer:
//   W ≈ Q(W − L1·L2) + L1·L2,   L ← fit_r(W − Q),   Q ← quantizer(W − L),
// each fit H-weighted (tr(R H Rᵀ) on the residual R = W − Q − L, the layer's output error) unless
// `diag`/`plain`. It starts as the reference does, from Q = 0 (`init=svd`: L = fit_r(W) first);
// `init=lorc` starts from the quantizer's own result, the LoRC point (with the same weighting),
// so the alternation can only improve on that lorc's objective. The defaults are the
// combination that measured best (docs/low_rank.md). Stops at the first iterate that does not
// lower the objective and keeps the best (the reference keeps the worse last one, its own
// TODO). Spec
//   lqlora(r32[,iters=10][,init=svd|lorc][,hessian|diag|plain][,damp=0.01][,svd=...][,seed=0])
// docs/low_rank.md.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"  // GCC bug 105329 in std::string concatenation
#include <chrono>
#include <cstdio>
#include <set>

#include "algorithms/low_rank.h"
#include "ptq/error.h"

namespace ptq {
namespace {

constexpr LowRankWeight kDefaultWeight = LowRankWeight::kHessian;

class LqLora final : public LayerRefiner {
 public:
  explicit LqLora(const Spec& spec) : o_(low_rank_options(spec, kDefaultWeight)) {
    iters_ = spec.int_value("iters", 10);
    const std::string init = spec.value("init").value_or("svd");
    spec.check_all_used();
    if (init != "lorc" && init != "svd")
      throw Error("spec '" + spec.to_string() + "': init must be lorc or svd, got '" + init + "'");
    from_svd_ = init == "svd";
    if (iters_ < 0 || iters_ > 1000) throw Error("spec '" + spec.to_string() + "': need 0 <= iters <= 1000");
  }
  std::string spec() const override {
    std::string s = "lqlora(" + low_rank_spec_args(o_, kDefaultWeight);
    if (iters_ != 10) s += ",iters=" + std::to_string(iters_);
    if (!from_svd_) s += ",init=lorc";
    return s + ")";
  }
  bool needs_stats() const override { return o_.weight != LowRankWeight::kNone; }

  void refine(const WeightQuantizer& quantizer, const Mat& w, const InputStats* stats, QuantizedLayer& q,
              QuantLog* log) const override {
    const auto t0 = std::chrono::steady_clock::now();
    if (q.low_rank) throw Error("lqlora: the layer already has a low-rank branch (" + q.part_names() + ")");
    if (needs_stats() && (!stats || stats->tokens() == 0))
      throw Error("lqlora: the H-weighted fit needs calibration inputs, got none (lqlora(...,plain) needs none)");
    // Every weighting is scored by the full H (diag included): the output error is what the
    // alternation is for.
    const MatD* h = needs_stats() ? &stats->hessian() : nullptr;
    const MatD wd = w.cast<double>();
    QuantLog inner;  // the quantizer's and the fits' own messages, summarised below
    auto fit = [&](const QuantizedLayer& quantized) {
      return fp16_branch(fit_low_rank(wd - quantized.stored_weight().cast<double>(), h, o_, &inner));
    };
    auto requantize = [&](const LowRankBranch& l) { return quantizer.quantize(w - l.product(), stats, &inner); };
    auto objective = [&](const QuantizedLayer& quantized, const LowRankBranch& l) {
      return weighted_error(wd - quantized.stored_weight().cast<double>(), l.product().cast<double>(), h);
    };

    QuantizedLayer best_q = from_svd_ ? requantize(fp16_branch(fit_low_rank(wd, h, o_, &inner))) : q;
    LowRankBranch best_l = fit(best_q);
    double best = objective(best_q, best_l);
    const double start = weighted_error(wd - q.stored_weight().cast<double>(), MatD::Zero(w.rows(), w.cols()), h);
    std::string trace = ratio_text(best / start);
    int used = 0;
    for (int it = 0; it < iters_; ++it) {
      QuantizedLayer next_q = requantize(best_l);
      LowRankBranch next_l = fit(next_q);
      const double f = objective(next_q, next_l);
      trace += " " + ratio_text(f / start);
      if (!(f < best)) break;
      best = f;
      best_q = std::move(next_q);
      best_l = std::move(next_l);
      ++used;
    }
    q = std::move(best_q);
    q.low_rank = std::move(best_l);
    if (log) {
      log->messages.push_back("lqlora: rank " + std::to_string(q.low_rank->rank()) + ", " + std::to_string(used) +
                              " improving iterations; objective relative to the quantizer's alone: " + trace);
      std::set<std::string> seen;  // each iteration repeats the quantizer's and the fit's notes
      for (const std::string& m : inner.messages)
        if (seen.insert(m).second) log->messages.push_back(m);
      log->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }

 private:
  static std::string ratio_text(double v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.4f", v);
    return buf;
  }

  LowRankOptions o_;
  int iters_ = 10;
  bool from_svd_ = true;
};

const RefinerRegistrar kRegister("lqlora", [](const Spec& s) -> std::unique_ptr<LayerRefiner> {
  return std::make_unique<LqLora>(s);
});

}  // namespace
}  // namespace ptq
