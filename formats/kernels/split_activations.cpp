// Three-digit int8 split of the activations for the int8x3 arithmetic (kernels.h). The digits
// are computed in double from the fp32 x, once per call and identically for every path.
#include <algorithm>
#include <cmath>

#include "formats/kernels/kernels.h"
#include "ptq/error.h"

namespace ptq::kernels {

namespace {

void split_token(const PackedMatrix& m, const float* x, int8_t* digit[kDigits], float* scale, float* xsum) {
  float gathered[kBlockCols];
  for (int g = 0; g < m.groups; ++g) {
    float sum = 0.0f;
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      const float d = gather_block(m, x, b, gathered) / 127.0f;
      for (int i = 0; i < kBlockCols; ++i) sum += gathered[i];
      scale[b] = d;
      for (int i = 0; i < kBlockCols; ++i) {
        // Residual r is exact in double; each digit takes its rounding, the next the remainder·2^7.
        double r = std::isfinite(d) && d > 0.0f ? double(gathered[i]) / double(d) : 0.0;
        for (int k = 0; k < kDigits; ++k) {
          const double q = std::clamp(std::nearbyint(r), -127.0, 127.0);
          digit[k][size_t(b) * kBlockCols + i] = int8_t(q);
          r = (r - q) * double(1 << kDigitBits);
        }
      }
    }
    xsum[g] = sum;
  }
}

}  // namespace

SplitActivations split_activations(const PackedMatrix& m, const float* x, int tokens) {
  PTQ_ASSERT(tokens >= 0);
  SplitActivations a(m, tokens);
  const size_t width = a.width();
  for (int t = 0; t < tokens; ++t) {
    int8_t* digit[kDigits];
    for (int k = 0; k < kDigits; ++k) digit[k] = a.digit[k].data() + size_t(t) * width;
    split_token(m, x + size_t(t) * m.cols, digit, a.scale.data() + size_t(t) * m.blocks, a.xsum.data() + size_t(t) * m.groups);
  }
  return a;
}

}  // namespace ptq::kernels
