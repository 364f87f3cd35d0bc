// Round-to-nearest: every weight independently to its group's grid. The baseline GPTQ is
// measured against; spec `rtn(w4,g128[,sym][,mse])`, g0 = per-channel.
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 kernels and a false
// -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include <chrono>

#include "algorithms/grid.h"

namespace ptq {
namespace {

class Rtn final : public WeightQuantizer {
 public:
  Rtn(const Spec& spec, const GridConstraints& c) : grid_(grid::grid_from_spec(spec)) {
    spec.check_all_used();
    c.apply(grid_);
  }
  std::string spec() const override { return "rtn(" + grid::grid_spec_args(grid_) + ")"; }
  const QuantGrid& grid() const override { return grid_; }
  bool needs_stats() const override { return false; }
  QuantizedLayer quantize(const Mat& w, const InputStats*, QuantLog* log) const override {
    auto t0 = std::chrono::steady_clock::now();
    QuantizedLayer q = QuantizedLayer::from_grid(grid::quantize_rtn(w, grid_));
    if (log) log->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return q;
  }

 private:
  QuantGrid grid_;
};

const QuantizerRegistrar kRegister("rtn", [](const Spec& s, const GridConstraints& c) -> std::unique_ptr<WeightQuantizer> {
  return std::make_unique<Rtn>(s, c);
});

}  // namespace
}  // namespace ptq
