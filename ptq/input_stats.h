#pragma once
// Second-moment statistics of a linear layer's inputs, accumulated streaming and shared by the
// layers that read the same input (q/k/v, gate/up): H = 2/n Σ x xᵀ with fp64 accumulation, and
// the mean and max |x| per channel (AWQ- and SmoothQuant-style methods).
//
// Life cycle: add_batch() while calibration windows stream through; the first hessian() call
// finalizes — the pending fp32 chunk is folded and the accumulator becomes the full symmetric H
// in place, so a group's H is formed once whatever number of layers and stages read it, without
// a second K×K buffer. Transforms may still rescale or rotate the finalized statistics.
#include <cstdint>

#include "ptq/tensor.h"

namespace ptq {

class InputStats {
 public:
  explicit InputStats(int k);
  void add_batch(const Mat& x);  // x [tokens, K]; only before the first hessian()
  int k() const { return k_; }
  int64_t tokens() const { return n_; }
  // 2/n Σ x xᵀ, [K, K] (identity·0 scale when no token was seen: all zeros). Formed on the first
  // call; later calls return the same matrix. Not for concurrent first calls.
  const MatD& hessian() const;
  VecD mean_abs() const;
  VecD max_abs() const;  // max |x| per channel over every token seen (0 before any)
  // Rows and columns [begin, begin+size) of hessian() without forming the whole [K, K] matrix
  // (AWQ's searches only need the diagonal blocks of the quantization groups).
  MatD hessian_block(int begin, int size) const;
  // Re-describes the statistics for the input x ⊙ d (channel c multiplied by d[c]), as after a
  // transform folds a per-channel scale into the operation producing x: Σ x xᵀ → D (Σ x xᵀ) D,
  // Σ|x| → Σ|x| ⊙ |d|, max|x| → max|x| ⊙ |d|. Exact, so a quantizer running afterwards sees the transformed input.
  void scale_channels(const VecD& d);
  // Re-describes the statistics for the input x·T (an input transform): H → Tᵀ H T. The mean and
  // max |x| of a rotated input are not derivable from H and are marked unavailable (mean_abs()
  // and max_abs() abort).
  void transform_input(const MatD& t);
  bool has_mean_abs() const { return abs_sum_valid_; }

 private:
  void finalize() const;
  double upper_sum(int i, int j) const {  // Σ x xᵀ at (i, j), j >= i, before finalize
    return pending_ > 0 ? xtx_(i, j) + static_cast<double>(partial_(i, j)) : xtx_(i, j);
  }
  void fold_pending() const;

  int k_;
  int64_t n_ = 0;
  // Σ x xᵀ (upper triangle) until finalized, then the full symmetric H = 2/n Σ x xᵀ.
  mutable MatD xtx_;
  mutable bool finalized_ = false;
  // The fp32 sum of the current chunk (upper triangle), carried across batches until it holds
  // kChunkTokens tokens and is folded into xtx_: calibration windows of a few hundred tokens
  // would otherwise each cost a full K×K fp64 pass. Readers add it on the fly.
  mutable Mat partial_;
  mutable int pending_ = 0;  // tokens in partial_ not yet folded
  VecD abs_sum_;
  VecD abs_max_;
  bool abs_sum_valid_ = true;  // both abs_sum_ and abs_max_
};

// ||X Wᵀ − X Ŵᵀ||² / ||X Wᵀ||² computed from H (∝ XᵀX) as tr(ΔW H ΔWᵀ) / tr(W H Wᵀ).
double relative_output_error(const Mat& w, const Mat& w_hat, const MatD& h);

}  // namespace ptq
