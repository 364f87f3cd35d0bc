#pragma once
// The weight-quantizer interface every algorithm implements (docs/architecture.md).
//
// A linear layer y = x Wᵀ has W [N out, K in]. Calibration inputs x [tokens, K] are folded into
// InputStats (shared by the layers that read the same input: q/k/v, gate/up); a quantizer turns
// (W, stats) into a GridCodes: integer codes plus per-group scale and zero, with g_idx
// saying which group each input column uses (act-order permutes it).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "algorithms/spec.h"
#include "ptq/quantized_layer.h"
#include "ptq/tensor.h"

namespace ptq {


// Second-moment statistics of a layer's inputs, accumulated streaming:
// H = 2/n Σ x xᵀ with fp64 accumulation; also the mean |x| per channel (for AWQ-style methods).
class InputStats {
 public:
  explicit InputStats(int k);
  void add_batch(const Mat& x);  // x [tokens, K]
  int k() const { return k_; }
  int64_t tokens() const { return n_; }
  MatD hessian() const;  // 2/n Σ x xᵀ, [K, K]
  VecD mean_abs() const;
  // Rows and columns [begin, begin+size) of hessian() without forming the whole [K, K] matrix
  // (AWQ's searches only need the diagonal blocks of the quantization groups).
  MatD hessian_block(int begin, int size) const;
  // Re-describes the statistics for the input x ⊙ d (channel c multiplied by d[c]), as after a
  // transform folds a per-channel scale into the operation producing x: Σ x xᵀ → D (Σ x xᵀ) D,
  // Σ|x| → Σ|x| ⊙ |d|. Exact, so a quantizer running afterwards sees the transformed input.
  void scale_channels(const VecD& d);

 private:
  int k_;
  int64_t n_ = 0;
  MatD xtx_;  // Σ x xᵀ
  // The fp32 sum of the current chunk (upper triangle), carried across batches until it holds
  // kChunkTokens tokens and is folded into xtx_: calibration windows of a few hundred tokens
  // would otherwise each cost a full K×K fp64 pass. Readers add it on the fly.
  Mat partial_;
  int pending_ = 0;  // tokens in partial_ not yet folded
  double upper_sum(int i, int j) const {  // Σ x xᵀ at (i, j), j >= i
    return pending_ > 0 ? xtx_(i, j) + static_cast<double>(partial_(i, j)) : xtx_(i, j);
  }
  void fold_pending();
  VecD abs_sum_;
};

struct QuantLog {
  std::vector<std::string> messages;  // e.g. "Cholesky failed, damping raised to 0.1"
  double seconds = 0;
};

class WeightQuantizer {
 public:
  virtual ~WeightQuantizer() = default;
  virtual std::string spec() const = 0;  // canonical spec string, parses back to an equal object
  virtual const QuantGrid& grid() const = 0;
  virtual bool needs_stats() const = 0;  // false for RTN
  virtual GridCodes quantize(const Mat& w, const InputStats* stats, QuantLog* log) const = 0;
};

using QuantizerFactory = std::function<std::unique_ptr<WeightQuantizer>(const Spec&)>;
// Registration happens in each algorithm's .cpp through a static Registrar.
void register_quantizer(const std::string& name, QuantizerFactory f);
std::unique_ptr<WeightQuantizer> make_quantizer(const Spec& spec);  // throws Error if unknown
std::vector<std::string> registered_quantizers();

struct QuantizerRegistrar {
  QuantizerRegistrar(const std::string& name, QuantizerFactory f) { register_quantizer(name, f); }
};

// ||X Wᵀ − X Ŵᵀ||² / ||X Wᵀ||² computed from H (∝ XᵀX) as tr(ΔW H ΔWᵀ) / tr(W H Wᵀ).
double relative_output_error(const Mat& w, const Mat& w_hat, const MatD& h);

}  // namespace ptq
