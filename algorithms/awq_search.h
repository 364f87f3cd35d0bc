#pragma once
// AWQ's two searches (Lin et al., 2023; docs/awq.md), on one linear group's weights and its
// InputStats, with the final quantizer's grid and round-to-nearest:
//  - scale search: s = mean|x|^α / sqrt(max·min) for α = 0, 1/n, ..., (n-1)/n, keeping the α
//    whose quantized layers Q(W·diag(s))·diag(1/s) have the smallest output error;
//  - clip search: for every (row, quantization group), the clamp |w| <= r·max|w| for
//    r = 1, 1 - 1/n, ... down to 1 - max_shrink (exclusive), keeping the r with the smallest
//    output error of that group.
//
// Objective: the output error ‖X ΔWᵀ‖² = n/2 · tr(ΔW H ΔWᵀ) restricted to the block diagonal of
// H over quantization groups (tiles of kTile columns for per-channel grids):
//   E(ΔW) = Σ_rows Σ_groups δ_g H_gg δ_gᵀ.
// For the clip search this is exactly llm-awq's objective (it compares per-group partial
// outputs), evaluated on all calibration tokens instead of a 512-token subsample. For the scale
// search it drops the cross-group terms δ_g H_gh δ_hᵀ, whose rounding errors are nearly
// independent between groups; it costs N·K·group per candidate instead of N·K² (docs/awq.md
// measures how close the chosen α is to the one the full error would pick).
// Work is split in fixed chunks of rows and summed in chunk order: the result is bit-identical
// at any thread count.
#include <functional>
#include <vector>

#include "ptq/stages.h"

namespace ptq::awq {

// What the scale search minimises: the output error of the module the group feeds on sampled
// calibration tokens (llm-awq's objective; GroupContext::module_error), the layers' whole output
// error tr(ΔW H ΔWᵀ) (N·K² per candidate), or its block diagonal above.
enum class Objective { kModule, kFull, kBlockDiagonal };

constexpr int kTile = 128;  // objective block width for per-channel grids (group_size -1)

// The fp32 diagonal blocks of H the objective uses; block b covers columns
// [b·width, min((b+1)·width, K)).
struct ObjectiveBlocks {
  int width = 0;
  std::vector<Mat> h;
};
ObjectiveBlocks objective_blocks(const InputStats& stats, const QuantGrid& g);

// Σ_rows Σ_blocks δ H_bb δᵀ for δ = w − w_hat (both [N, K]).
double block_error(const Mat& w, const Mat& w_hat, const ObjectiveBlocks& blocks);

// mean|x|^α clamped at 1e-4 and normalised by sqrt(max·min), in fp32 (the precision it is
// applied in).
Vec scales_for_alpha(const VecD& mean_abs, double alpha);

// Round-to-nearest of W·diag(s), returned as Q(W·diag(s))·diag(1/s) (an empty s means 1).
Mat fake_quantize_scaled(const Mat& w, const Vec& s, const QuantGrid& g);

struct ScaleSearch {
  double alpha = 0;
  Vec scales;                  // [K]
  std::vector<double> errors;  // objective for each α of the grid (α = i / n_grid)
};
ScaleSearch search_scales(const std::vector<const Mat*>& layers, const InputStats& stats,
                          const QuantGrid& g, int n_grid, Objective objective = Objective::kBlockDiagonal);

// The same search scored by `module_error` (one candidate matrix per layer).
ScaleSearch search_scales_module(const std::vector<const Mat*>& layers, const InputStats& stats, const QuantGrid& g,
                                 int n_grid, const std::function<double(const std::vector<const Mat*>&)>& module_error);

// Best clamp value max|w|·r for every row and quantization group: [N, G].
Mat search_clip(const Mat& w, const InputStats& stats, const QuantGrid& g, int n_grid,
                double max_shrink);
// w(r, c) = clamp(w(r, c), −m, m) with m = max_val(r, group of c).
void apply_clip(Mat& w, const Mat& max_val, const QuantGrid& g);

}  // namespace ptq::awq
