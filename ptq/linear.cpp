#include "ptq/linear.h"

#include <algorithm>
#include <cmath>

#include "ptq/error.h"

namespace ptq {

void round_inputs(Mat& x, InputRounding r) {
  constexpr int kBlock = 32;
  if (r == InputRounding::kNone) return;
  float* p = x.data();
  const size_t n = size_t(x.size());
  if (r == InputRounding::kF16) {
    for (size_t i = 0; i < n; ++i) p[i] = f16_to_f32(f32_to_f16(p[i]));
  } else if (r == InputRounding::kBF16) {
    for (size_t i = 0; i < n; ++i) p[i] = bf16_to_f32(f32_to_bf16(p[i]));
  } else if (r == InputRounding::kBlocks8K) {
    constexpr int kSuper = 256;
    PTQ_ASSERT(x.cols() % kSuper == 0, "blocks of 256 along each row");
    for (size_t b = 0; b < n; b += kSuper) {
      float amax = 0, m = 0;
      for (int j = 0; j < kSuper; ++j)
        if (std::fabs(p[b + j]) > amax) {
          amax = std::fabs(p[b + j]);
          m = p[b + j];
        }
      // ggml's quantize_row_q8_K_ref: an fp32 scale 1/iscale, codes capped at 127, none for a zero block.
      const float iscale = amax != 0 ? -127.0f / m : 0.0f, d = amax != 0 ? 1.0f / iscale : 0.0f;
      for (int j = 0; j < kSuper; ++j) p[b + j] = d * std::min(127.0f, std::nearbyint(iscale * p[b + j]));
    }
  } else {
    PTQ_ASSERT(x.cols() % kBlock == 0, "blocks of 32 along each row");
    for (size_t b = 0; b < n; b += kBlock) {
      float amax = 0;
      for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(p[b + j]));
      // ggml's quantize_row_q8_0_ref: codes from the fp32 scale, values with its fp16 rounding.
      const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f, stored = f16_to_f32(f32_to_f16(d));
      for (int j = 0; j < kBlock; ++j) p[b + j] = stored * std::round(p[b + j] * id);
    }
  }
}

void PackedLinear::matmul_quantized(const float* x, int tokens, const ActivationQuant& a, float* y) const {
  Mat xq = Eigen::Map<const Mat>(x, tokens, cols());
  quantize_activations(xq, a);
  matmul(xq.data(), tokens, y);
}

Mat Linear::forward(const Mat& x_in) const {
  PTQ_ASSERT(x_in.cols() == cols(), "linear input width does not match the weight");
  const bool rounds = input_rounding != InputRounding::kNone;
  const bool quantizes = act.enabled();
  Mat x;
  if (rounds || input_transform) x = x_in;
  if (rounds) round_inputs(x, input_rounding);
  if (input_transform) x = input_transform->apply(x);
  const Mat& in = rounds || input_transform ? x : x_in;
  Mat y;
  if (packed) {
    y.resize(in.rows(), packed->rows());
    if (quantizes) packed->matmul_quantized(in.data(), int(in.rows()), act, y.data());
    else packed->matmul(in.data(), int(in.rows()), y.data());
  } else if (quantizes) {
    Mat xq = in;
    quantize_activations(xq, act);
    y.noalias() = xq * w.transpose();
  } else {
    y.noalias() = in * w.transpose();
  }
  if (branch) {
    const Mat u = in * branch->l2.transpose();
    y.noalias() += u * branch->l1.transpose();
  }
  if (bias.size()) y.rowwise() += bias.transpose();
  return y;
}

}  // namespace ptq
