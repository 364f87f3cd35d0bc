#pragma once
// GPTQ's pieces shared by gptq.cpp (setup, update factor, result) and gptq_loop.cpp (the
// column loop). docs/algorithms.md, "GPTQ", derives the update form used here.
#include <cstdint>
#include <vector>

#include "algorithms/gptq.h"

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
  std::vector<uint8_t> codes;  // [N, K] original column order
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
};

// Runs every block of every row, filling p.codes and (for dynamic groups) p.scales / p.zeros.
// Rows are processed in fixed chunks, so the result does not depend on the thread count.
void run_update_loop(Problem& p, const UpdateFactor& f, const GptqOptions& o);

// The group that working column j belongs to (the same for every row).
int group_of(const Problem& p, const GptqOptions& o, int j);

}  // namespace ptq::gptq_detail
