#pragma once
// GPTQ's pieces shared by gptq.cpp (setup, update factor, result) and gptq_loop.cpp (the
// column loop). docs/algorithms.md, "GPTQ", derives the update form used here.
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "algorithms/gptq.h"
#include "algorithms/grid.h"

namespace ptq::gptq_detail {

// The layer in GPTQ's working (act-order permuted) column order, described without copying W
// or H: the loop gathers what it needs one row chunk at a time.
struct Problem {
  const Mat* w = nullptr;      // [N, K] the caller's weights, original column order
  std::vector<int> perm;       // working position -> original column
  std::vector<uint8_t> dead;   // [K] by original column: the input is always zero
  VecD h_diag;                 // [K] diag H in working order, dead entries 1
  Mat scales, zeros;           // [N, G]
  bool grouped = false;
  bool static_params = false;  // scales/zeros fixed before the loop
  bool original_groups = false;  // a column's group is its original column's (static, group-aware)
  std::vector<uint8_t> codes;  // [N, K] original column order
  std::optional<grid::SuperBlockCodes> super_codes;  // the coded statistics of a super-block grid

  // SpQR's changes to the loop (algorithms/spqr.cpp); plain GPTQ leaves them unset.
  // fit_group replaces the per-row fit of a dynamic group: rows [r0, r0 + rows) of working
  // columns [j, j + width) (group gi), their GPTQ-updated weights row-major in g [rows, width].
  // Chunks start at multiples of 16 rows, so row blocks of up to 16 never straddle two calls.
  std::function<void(Problem& p, int r0, int rows, int gi, int j, int width, const float* g)> fit_group;
  // code = clamp(round(x/s + z)) (SpQR's fractional zeros) instead of GPTQ's round(x/s) + z.
  bool round_after_zero = false;
  // A weight whose error e = Ŵ − Q has e²·R_jj² > outlier_threshold (the reference's
  // err²/U_jj² with U = R⁻¹) keeps its value: Q becomes the grid value plus an fp16 residual,
  // stored in outlier_residual (mask in is_outlier), both [N, K] original column order.
  float outlier_threshold = std::numeric_limits<float>::infinity();
  std::vector<uint8_t> is_outlier;
  std::vector<float> outlier_residual;
  bool has_outliers() const { return !is_outlier.empty(); }
};

// What the loop propagates errors with. R is the upper triangular factor with
// H + λI = R·Rᵀ, and R̂ = R·diag(R)⁻¹ (unit diagonal): quantizing column j moves every later
// column t by (W⁰_j − Q_j)·R̂_jt, where W⁰ is the original weight (docs/algorithms.md).
struct UpdateFactor {
  MatMap rhat;  // [K, K], zero below the diagonal; GptqWorkspace memory
  // Dynamic groups are fitted on GPTQ's partially updated weights, which the R̂ form does not
  // hold: for a block starting at i1 that contains group starts, group_fit[i1 / block] is the
  // inverse of R̂[i1:i1+m, i1:i1+m], m reaching the end of the block's last group (else empty).
  std::vector<Mat> group_fit;
  Vec r_diag;  // [K] diag R in working order: 1/U_jj of the reference's U = chol(H⁻¹)
};

// Runs every block of every row, filling p.codes and (for dynamic groups) p.scales / p.zeros.
// Rows are processed in fixed chunks, so the result does not depend on the thread count.
void run_update_loop(Problem& p, const UpdateFactor& f, const GptqOptions& o);

// The group that working column j belongs to (the same for every row).
int group_of(const Problem& p, const GptqOptions& o, int j);

// The steps of gptq_quantize, for methods that run GPTQ's sweep with changes (SpQR).
// Dead columns, fixed parameters and the act-order permutation.
Problem prepare(const Mat& w, const MatD& h, const GptqOptions& o);
// The damped factor, retrying the Cholesky with more damping (logged) as gptq_quantize does.
UpdateFactor damped_update_factor(const MatD& h, const Problem& p, const GptqOptions& o, const std::string& shape,
                                  QuantLog* log, GptqWorkspace& ws);
// The dense grid part: codes, statistics and g_idx (dynamic groups numbered in working order).
GridCodes assemble(Problem& p, const GptqOptions& o);
// Validates the inputs as gptq_quantize does, throwing Error that names `who` and the shape.
void validate_inputs(const Mat& w, const MatD& h, const GptqOptions& o, const std::string& who);
std::string shape_of(const Mat& w);

}  // namespace ptq::gptq_detail
