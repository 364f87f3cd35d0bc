#pragma once
// AWQ as a recipe transform stage (`awq+rtn(w4,g128)`, `awq+gptq(w4,g32)`; docs/awq.md).
// Per linear group: search the activation-aware scale s (awq_search.h), multiply the group's
// weight columns by s and fold 1/s into the operation producing the input (the RMSNorm gain, or
// the rows of v_proj / up_proj), then search and apply a per-group clamp of each layer's
// weights. The group's InputStats are rescaled to describe the new input.
//
// Spec: awq[(grid=20,clip_grid=20,max_shrink=0.5,no_scale,no_clip)]; `scale` and `clip` are
// accepted as explicit defaults. Canonical printing omits defaults: plain `awq`.
#include <string>

#include "algorithms/awq_search.h"
#include "ptq/stages.h"

namespace ptq {

struct AwqOptions {
  bool scale = true;        // search and fold activation-aware scales
  bool clip = true;         // search and apply per-group weight clamps
  int grid = 20;            // α = 0, 1/grid, ..., (grid-1)/grid
  int clip_grid = 20;       // shrink ratios 1 - i/clip_grid ...
  double max_shrink = 0.5;  // ... for i < max_shrink·clip_grid (down to 0.55 by default)
  awq::Objective objective = awq::Objective::kModule;  // of the scale search
  int tokens = 4096;  // calibration tokens the module objective runs on
};

AwqOptions awq_options_from_spec(const Spec& spec);  // throws Error on bad values
std::string awq_spec(const AwqOptions& o);

// Applies AWQ to one group; what the registered "awq" transform runs.
void apply_awq(const AwqOptions& o, GroupContext& group, QuantLog* log);

}  // namespace ptq
