#pragma once
// Weighted low-rank fits of a matrix, the shared step of the low-rank branches (LoRC now;
// SVDQuant and LQ-LoRA reuse it): the rank-r L = L1·L2 minimising
//   f(L) = tr((E − L) H (E − L)ᵀ),
// the output error of replacing x·Eᵀ by x·Lᵀ on inputs whose second moment is H
// (../shared/design/algorithms-reference.md §5, docs/low_rank.md).
//
// With any S such that S·Sᵀ = H (positive definite), f(L) = ‖(E − L)·S‖²_F and L ↦ L·S is a
// bijection of the rank-r matrices, so the minimiser is L = [E·S]_r·S⁻¹ with [·]_r the truncated
// SVD (Eckart–Young), and f at the optimum is the sum of the squared discarded singular values
// of E·S. S is H's Cholesky factor (any other square root, such as H^½, gives the same L). The
// SVD is LAPACK's dgesdd in fp64, or for wide layers a randomized range finder (Halko, Martinsson
// and Tropp 2011, Algorithm 4.4) that only multiplies E·S and its transpose by thin matrices.
#include <cstdint>
#include <string>
#include <vector>

#include "ptq/quantized_layer.h"
#include "ptq/spec.h"
#include "ptq/stages.h"
#include "ptq/tensor.h"

namespace ptq {

enum class LowRankWeight {
  kHessian,   // the full H (exact output error)
  kDiagonal,  // diag(H) only: S = diag(√H_jj)
  kNone,      // the Frobenius norm of E (ZeroQuant-V2's LoRC as its paper states it)
};

enum class LowRankSvd {
  kAuto,        // exact when min(N, K) <= kExactSvdMaxWidth, else randomized
  kExact,       // dgesdd of the whole E·S
  kRandomized,  // rank + 10 Gaussian probes, 4 power iterations, each re-orthonormalized
};
constexpr int kExactSvdMaxWidth = 1024;

constexpr double kDefaultLowRankDamp = 0.01;

struct LowRankOptions {
  int rank = 32;
  LowRankWeight weight = LowRankWeight::kHessian;
  LowRankSvd svd = LowRankSvd::kAuto;
  uint64_t seed = 0;  // of the randomized probes
  // H + damp·mean(diag H)·I replaces H, as GPTQ damps: columns no calibration token excites
  // (H_jj = 0) still get a finite weight, and the fit does not chase the noise of a few tokens.
  double damp = kDefaultLowRankDamp;
};

struct LowRankFit {
  MatD l1;             // [N, r]
  MatD l2;             // [r, K]
  // The singular values of E·S, descending: all of them (exact), or the rank + 10 leading
  // estimates (randomized).
  VecD singular;
  bool randomized = false;
  double damp = 0;     // the damping used (raised when H + damp·I was not positive definite)
  // f(L) and f(0) for the damped H: the weighted error left and the one the branch started from
  // (f(L) = f(0) − Σ_{i<r} σ_i², exact with either SVD for the factors it returns).
  double residual = 0;
  double initial = 0;
};

// e: [N, K]; h: [K, K] symmetric positive semi-definite, or nullptr with kNone. The rank is
// clamped to min(N, K). Each factor pair is balanced (‖L1[:, i]‖ = ‖L2[i, :]‖) so neither side
// leaves fp16's range before the other. When H + damp·I is not positive definite the damping is
// raised tenfold (logged) up to 1; beyond that the diagonal weighting is used (logged).
LowRankFit fit_low_rank(const MatD& e, const MatD* h, const LowRankOptions& o, QuantLog* log);

// The branch as stored: fp16-exact factors (bits 16).
LowRankBranch fp16_branch(const LowRankFit& fit);

// The low-rank arguments shared by the stages that fit a branch (each marks what it reads):
//   r<rank> (default 32), hessian | diag | plain (default: `default_weight`), damp=,
//   svd=auto|exact|randomized, seed=
// Throws Error quoting the spec on a bad value.
LowRankOptions low_rank_options(const Spec& spec, LowRankWeight default_weight);
// Those arguments in canonical form, defaults omitted except the rank: "r32", "r8,diag,svd=exact".
std::string low_rank_spec_args(const LowRankOptions& o, LowRankWeight default_weight);

// tr((E − L) H (E − L)ᵀ) in fp64 (H undamped as given); with h == nullptr ‖E − L‖²_F.
double weighted_error(const MatD& e, const MatD& l, const MatD* h);

}  // namespace ptq
