// Gather of fp32 activations into the packed column order, for the fp32 arithmetic
// (kernels.h). Nothing is rounded: x and x·2^−e are exact copies (barring subnormals).
#include <cmath>

#include "formats/kernels/kernels.h"
#include "ptq/error.h"

namespace ptq::kernels {

FloatActivations gather_activations(const PackedMatrix& m, const float* x, int tokens) {
  PTQ_ASSERT(tokens >= 0);
  FloatActivations a;
  a.tokens = tokens;
  a.blocks = m.blocks;
  a.groups = m.groups;
  const size_t width = size_t(m.blocks) * kBlockCols;
  a.x.assign(size_t(tokens) * width, 0.0f);
  a.x_shifted.assign(size_t(tokens) * width, 0.0f);
  a.xsum.assign(size_t(tokens) * m.groups, 0.0f);
  float inverse_power[kBlockCols];  // 2^−e per column of a block
  for (int c = 0; c < kBlockCols; ++c) inverse_power[c] = std::ldexp(1.0f, -code_bit_offset(m.bits, c));
  for (int t = 0; t < tokens; ++t) {
    const float* src = x + size_t(t) * m.cols;
    float* dst = a.x.data() + size_t(t) * width;
    float* shifted = a.x_shifted.data() + size_t(t) * width;
    for (size_t p = 0; p < width; ++p) {
      const int c = m.source_col[p];
      dst[p] = c < 0 ? 0.0f : src[c];
      shifted[p] = dst[p] * inverse_power[p % kBlockCols];
    }
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
