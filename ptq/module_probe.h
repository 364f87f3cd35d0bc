#pragma once
// The output of the module a linear group feeds, recomputed with candidate weights on a sample
// of calibration windows: what an activation-aware search (AWQ's, as llm-awq defines it) scores
// a candidate by. q/k/v feed the attention, whose output is taken after o_proj; gate/up feed the
// MLP, taken after down_proj. Other weights stay as the block holds them when the probe is made.
#include <cstdint>
#include <vector>

#include "ptq/forward.h"

namespace ptq {

class ModuleProbe {
 public:
  // `inputs`: the group's input for each sampled window, [T, K] as the block reads it (before
  // any input transform the layers carry).
  ModuleProbe(const ModelConfig& cfg, const RopeTable& rope, const BlockWeights& w, LinearInput group,
              std::vector<Mat> inputs);
  // Σ ‖module(x; candidate) − module(x; block)‖² over every sampled token, summed in fp64 in
  // window order (bit-identical at any thread count). One matrix per layer of the group, in
  // linear_short_names order.
  double error(const std::vector<const Mat*>& candidate) const;
  int64_t tokens() const { return tokens_; }

 private:
  Mat output(const std::vector<const Linear*>& layers, const Mat& x) const;

  const ModelConfig& cfg_;
  const RopeTable& rope_;
  LinearInput group_;
  std::vector<Linear> layers_;  // the group's layers as they are now
  Linear after_;                // o_proj (q/k/v) or down_proj (gate/up)
  std::vector<Mat> inputs_, reference_;
  int64_t tokens_ = 0;
};

// True for the groups whose module is more than their own layers (q/k/v and gate/up).
bool group_has_module(LinearInput group);

}  // namespace ptq
