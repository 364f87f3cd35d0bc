#pragma once
// QuantEase (Behdin et al. 2023; linkedin/QuantEase method/quantease.py), reimplemented from
// the derivation in ../shared/design/algorithms-reference.md §2 and docs/quantease.md:
// cyclic coordinate descent on f(Ŵ) = tr((W − Ŵ) Σ (W − Ŵ)ᵀ), Σ ∝ XᵀX (the layer's H), each
// column updated in closed form for all rows at once and rounded to its group's grid, which is
// fitted up front. Registered as
//   quantease(w3,g128[,sym][,act_order],iters=30,init=none|rtn|gptq[,no_relax],damp=0.01
//             [,outliers=0.01[,structured],alpha=1])
// The outlier-aware variant keeps a sparse full-precision set S (a fraction of the weights, or
// whole input columns with `structured`) and alternates coordinate descent on Ŵ with an
// iterative-hard-thresholding step on S; the layer is Ŵ (grid) + S (the sparse part, fp16).
#include <functional>
#include <vector>

#include "ptq/quantized_layer.h"
#include "ptq/stages.h"

namespace ptq {

enum class QuantEaseInit { kNone, kRtn, kGptq };

struct QuantEaseOptions {
  QuantGrid grid;
  int iters = 30;
  QuantEaseInit init = QuantEaseInit::kNone;
  bool act_order = false;
  // The reference's schedule: sweeps 1, 4, 7, ..., 25 skip the rounding (relaxed least squares),
  // never the last. Off: every sweep rounds.
  bool relax = true;
  double outliers = 0;  // fraction of weights (or of input columns when structured) kept in S
  bool structured = false;
  double alpha = 1.0;   // IHT step, in units of 1 / (2 λmax(Σ))
  // Σ + damp·mean(diag Σ)·I replaces Σ: a ridge toward W that, like GPTQ's damping, keeps the
  // descent from fitting the calibration tokens' noise (docs/quantease.md measures it).
  double damp = 0.0;
  int block = 128;      // columns per Gauss–Seidel block (cache blocking only)
  // Test hook: called after every sweep with the iterate (dense part, original column order),
  // whether that sweep rounded, and the objective the solver tracked for it.
  std::function<void(int sweep, const Mat& w_hat, bool quantized, double objective)> on_sweep;
};

// Whether sweep `it` of `iters` rounds to the grid (false for the relaxed sweeps).
bool quantease_sweep_rounds(const QuantEaseOptions& o, int it);

// h: [K, K] symmetric positive semi-definite (any positive multiple of XᵀX). The result's
// dense part holds the best rounded iterate (lowest objective, the initial one included when
// it is on the grid); log gets the objective of every sweep. Throws Error naming the shape on
// non-finite inputs.
QuantizedLayer quantease_quantize(const Mat& w, const MatD& h, const QuantEaseOptions& o, QuantLog* log);

// tr((W − Ŵ) H (W − Ŵ)ᵀ) in fp64, for tests and logs.
double quantease_objective(const Mat& w, const Mat& w_hat, const MatD& h);

}  // namespace ptq
