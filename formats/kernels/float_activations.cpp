// Gather of fp32 activations into the packed column order, for the fp32 arithmetic
// (kernels.h). Nothing is rounded: x and x·2^−e are exact copies (barring subnormals).
#include <cmath>

#include "formats/kernels/kernels.h"
#include "ptq/error.h"

namespace ptq::kernels {

FloatActivations gather_activations(const PackedMatrix& m, const float* x, int tokens) {
  PTQ_ASSERT(tokens >= 0);
  FloatActivations a(m, tokens);
  const size_t width = a.width();
  float inverse_power[kBlockCols];  // 2^−e per column of a block
  for (int c = 0; c < kBlockCols; ++c) inverse_power[c] = std::ldexp(1.0f, -code_bit_offset(m.bits, c));
  for (int t = 0; t < tokens; ++t) {
    const float* src = x + size_t(t) * m.cols;
    float* dst = a.x.data() + size_t(t) * width;
    float* shifted = a.x_shifted.data() + size_t(t) * width;
    for (int b = 0; b < m.blocks; ++b) gather_block(m, src, b, dst + size_t(b) * kBlockCols);
    for (size_t p = 0; p < width; ++p) shifted[p] = dst[p] * inverse_power[p % kBlockCols];
    for (int g = 0; g < m.groups; ++g) {
      float sum = 0.0f;
      for (size_t p = size_t(m.group_first_block[g]) * kBlockCols; p < size_t(m.group_first_block[g + 1]) * kBlockCols; ++p)
        sum += dst[p];
      a.xsum[size_t(t) * m.groups + g] = sum;
    }
  }
  return a;
}

}  // namespace ptq::kernels
