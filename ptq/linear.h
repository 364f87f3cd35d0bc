#pragma once
// A linear layer y = x Wᵀ (+ b) as the forward pass sees it: dense fp32 weights, or a packed
// quantized matrix run on the packed kernels (formats/ and kernels/ provide PackedLinear).
#include <memory>

#include "ptq/quantized_layer.h"
#include "ptq/tensor.h"

namespace ptq {

class PackedLinear {
 public:
  virtual ~PackedLinear() = default;
  virtual int rows() const = 0;  // out features
  virtual int cols() const = 0;  // in features
  // y [tokens, rows] = x [tokens, cols] · Wᵀ, both row-major.
  virtual void matmul(const float* x, int tokens, float* y) const = 0;
  virtual Mat dequantize() const = 0;  // [rows, cols]
};

struct Linear {
  Mat w;                                       // [out, in]; empty when packed
  std::shared_ptr<const PackedLinear> packed;  // set for packed checkpoints
  Vec bias;                                    // empty when the layer has none
  // Applied to x before w while a transform stage's group awaits quantization (w is then in the
  // transformed basis); packed layers apply their own transform inside `packed`.
  std::shared_ptr<const InputTransform> input_transform;

  Mat forward(const Mat& x) const;
  int rows() const { return packed ? packed->rows() : int(w.rows()); }
  int cols() const { return packed ? packed->cols() : int(w.cols()); }
};

}  // namespace ptq
