#include "formats/kernels/packed_matmul.h"

namespace ptq {
namespace {

// Scalar reference: dequantizes each weight on the fly from the codes, scales, zeros and g_idx
// exactly as QuantizedWeight::dequantize does, so its products equal x · dequantize()ᵀ up to
// summation order.
class ScalarPackedLinear final : public PackedLinear {
 public:
  explicit ScalarPackedLinear(QuantizedWeight q) : q_(std::move(q)) {}
  int rows() const override { return q_.rows; }
  int cols() const override { return q_.cols; }
  Mat dequantize() const override { return q_.dequantize(); }
  void matmul(const float* x, int tokens, float* y) const override {
    const int n = q_.rows, k = q_.cols;
    for (int t = 0; t < tokens; ++t) {
      for (int r = 0; r < n; ++r) {
        float acc = 0.0f;
        for (int c = 0; c < k; ++c) {
          const int g = q_.g_idx[c];
          const float w = (float(q_.q[size_t(r) * k + c]) - q_.zeros(r, g)) * q_.scales(r, g);
          acc += x[size_t(t) * k + c] * w;
        }
        y[size_t(t) * n + r] = acc;
      }
    }
  }

 private:
  QuantizedWeight q_;
};

}  // namespace

std::shared_ptr<const PackedLinear> make_packed_linear(const QuantizedWeight& q) {
  return std::make_shared<ScalarPackedLinear>(q);
}

}  // namespace ptq
