#pragma once
// GPTQ (Frantar et al. 2022), following the reference `fasterquant` of IST-DASLab/gptq.
// Registered as
// `gptq(w4,g128[,sym][,mse][,act_order][,static_groups][,group_aware][,damp=0.01][,block=128])`.
// The entry point below takes the Hessian directly so that tests can hand it matrices
// InputStats could never produce (indefinite ones, for the Cholesky retry path).
#include <cstddef>
#include <memory>

#include "ptq/stages.h"

namespace ptq {

struct GptqOptions {
  QuantGrid grid;
  bool act_order = false;
  bool static_groups = false;
  // Group-aware reordering (GAR, Gafni et al. 2025; GPTQModel's `act_group_aware`): groups are
  // visited by their largest diag H, and each group's columns by diag H, both descending, while
  // every group stays one contiguous run of original columns. Most of act-order's gain, and the
  // groups stay the natural ones (g_idx[c] = c / g), so every grid format and kernel takes it.
  bool group_aware = false;
  double damp = 0.01;  // fraction of mean(diag H) added to the diagonal
  int block = 128;     // lazy-batch width
  int max_retries = 5; // Cholesky failures tolerated, each raising damp tenfold
};

// Scratch that one GPTQ call needs and the next can reuse, since layers are quantized one after
// another: the K×K fp32 update factor. Fresh pages for it cost first-touch faults on every call
// (10–80 ms at K = 4096 on the 2-core test VM, 7–10% of the step); reused ones cost nothing.
// It grows to the largest K seen and keeps that (64 MB at K = 4096, 485 MB at 11008). Not for
// concurrent calls.
class GptqWorkspace {
 public:
  float* factor(int k);  // room for k·k floats, contents undefined

 private:
  std::unique_ptr<float[]> factor_;
  size_t capacity_ = 0;
};

// h: [K, K] symmetric (2/n Σ x xᵀ, any positive scale works). Throws ptq::Error when the
// Cholesky still fails after the retries, naming the layer shape. Without a workspace the call
// allocates its own.
GridCodes gptq_quantize(const Mat& w, const MatD& h, const GptqOptions& opt, QuantLog* log,
                              GptqWorkspace* workspace = nullptr);

// The factor the update loop propagates errors with (docs/algorithms.md, "GPTQ"): for a
// symmetric positive definite h = R·Rᵀ with R upper triangular, rhat [K, K] gets
// R̂ = R·diag(R)⁻¹ (unit diagonal, zeros below it) in fp32. The reference's factor U (the upper
// Cholesky factor of h⁻¹) relates to it as R̂ = (diag(U)⁻¹·U)⁻¹. False when the Cholesky fails.
// Exposed for tests.
bool gptq_update_factor(const MatD& h, Mat* rhat);

}  // namespace ptq
