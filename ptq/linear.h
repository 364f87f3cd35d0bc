#pragma once
// A linear layer y = x Wᵀ (+ b) as the forward pass sees it: dense fp32 weights, or a packed
// quantized matrix run on the packed kernels (formats/ and kernels/ provide PackedLinear).
#include <memory>

#include "ptq/activation_quant.h"
#include "ptq/quantized_layer.h"
#include "ptq/tensor.h"

namespace ptq {

// How an engine rounds a linear layer's input before its dot products. ptq's kernels use kNone;
// `ptq eval --llama-cpp-activations` sets what llama.cpp's CPU backend does for the layer's GGUF
// type (ggml's vec_dot_type), so that ptq computes what llama.cpp computes.
enum class InputRounding : uint8_t {
  kNone,
  kBlocks8,  // every 32 values of a row: d = amax/127, x → fp16(d)·round(x/d) (ggml's q8_0/q8_1)
  kBlocks8K, // every 256 values: s = −127/m (m the first value of largest |x|), x → min(127, rint(s·x))/s (q8_K)
  kF16,      // each value to fp16 (F16 weights)
  kBF16,     // each value to bf16 (BF16 weights)
};
// x rounded in place as `r` says; kBlocks8 (kBlocks8K) needs a width that is a multiple of 32 (256).
void round_inputs(Mat& x, InputRounding r);

class PackedLinear {
 public:
  virtual ~PackedLinear() = default;
  virtual int rows() const = 0;  // out features
  virtual int cols() const = 0;  // in features
  // y [tokens, rows] = x [tokens, cols] · Wᵀ, both row-major.
  virtual void matmul(const float* x, int tokens, float* y) const = 0;
  // y = x̂·Wᵀ, x̂ = x with each token quantized as `a` says (quantize_activations). This default
  // fake-quantizes a copy and calls matmul; the packed kernels multiply the integer grid itself
  // (formats/kernels: W4A8 / W4A4 on the int8 dot-product path).
  virtual void matmul_quantized(const float* x, int tokens, const ActivationQuant& a, float* y) const;
  virtual Mat dequantize() const = 0;  // [rows, cols]
};

struct Linear {
  Mat w;                                       // [out, in]; empty when packed
  std::shared_ptr<const PackedLinear> packed;  // set for packed checkpoints
  Vec bias;                                    // empty when the layer has none
  // Applied to x before w while a transform stage's group awaits quantization (w is then in the
  // transformed basis). Packed layers apply their own transform inside `packed`, before they
  // quantize the activations (matmul_quantized), so x·T is what gets quantized either way.
  std::shared_ptr<const InputTransform> input_transform;
  InputRounding input_rounding = InputRounding::kNone;
  ActivationQuant act{};  // fake per-token quantization of the (transformed) input
  // A transform stage's low-rank branch (svdquant), added to x·wᵀ while the group awaits
  // quantization: w then holds only the residual that the quantizer will see.
  std::shared_ptr<const LowRankBranch> branch{};

  Mat forward(const Mat& x) const;
  int rows() const { return packed ? packed->rows() : int(w.rows()); }
  int cols() const { return packed ? packed->cols() : int(w.cols()); }
};

}  // namespace ptq
