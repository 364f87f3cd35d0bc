// Activations for the int8 arithmetic (kernels.h), per block or on a recipe's per-token grid,
// and the block gather all three arithmetics share.
#include <algorithm>
#include <cmath>
#include <limits>

#include "formats/kernels/kernels.h"
#include "ptq/error.h"

namespace ptq::kernels {

float gather_block(const PackedMatrix& m, const float* x, int b, float out[kBlockCols]) {
  float amax = 0.0f;
  bool finite = true;
  for (int i = 0; i < kBlockCols; ++i) {
    const int c = m.source_col[size_t(b) * kBlockCols + i];
    out[i] = c < 0 ? 0.0f : x[c];
    finite = finite && std::isfinite(out[i]);
    amax = std::max(amax, std::fabs(out[i]));
  }
  return finite ? amax : std::numeric_limits<float>::quiet_NaN();
}

namespace {

// One token: gather into packed order, then int8-quantize each block around its max |x|.
// nearbyint rounds half to even under the default rounding mode; the result does not depend
// on the kernel path, so every path multiplies the same x̂.
void quantize_token(const PackedMatrix& m, const float* x, int8_t* q, float* scale, float* group_sum) {
  float gathered[kBlockCols];
  for (int g = 0; g < m.groups; ++g) {
    float gsum = 0.0f;
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      const float d = gather_block(m, x, b, gathered) / 127.0f;
      const bool finite = std::isfinite(d);
      const float inv = finite && d > 0.0f ? 1.0f / d : 0.0f;
      int isum = 0;
      for (int i = 0; i < kBlockCols; ++i) {
        const int v = finite ? int(std::nearbyint(gathered[i] * inv)) : 0;
        q[size_t(b) * kBlockCols + i] = int8_t(std::clamp(v, -127, 127));
        isum += q[size_t(b) * kBlockCols + i];
      }
      scale[b] = d;
      gsum = std::fma(d, float(isum), gsum);
    }
    group_sum[g] = gsum;
  }
}

}  // namespace

ActivationBlocks quantize_activations(const PackedMatrix& m, const float* x, int tokens) {
  PTQ_ASSERT(tokens >= 0);
  ActivationBlocks a(m, tokens);
  for (int t = 0; t < tokens; ++t)
    quantize_token(m, x + size_t(t) * m.cols, a.q.data() + size_t(t) * m.blocks * kBlockCols,
                   a.scale.data() + size_t(t) * m.blocks, a.group_sum.data() + size_t(t) * m.groups);
  return a;
}

namespace {

// One token of GridActivations: its grid codes, then v gathered into the packed order.
float grid_token(const PackedMatrix& m, const float* x, const ActivationQuant& a, int16_t* codes, int8_t* q,
                 float* scale, float* group_sum, float* x_hat) {
  const RowGrid grid = quantize_row_codes(x, m.cols, a, codes);
  const bool shifted = a.asym && a.bits == 8;
  const int shift = shifted ? 128 : grid.zero;
  if (x_hat)
    for (int c = 0; c < m.cols; ++c) x_hat[c] = grid.scale * float(codes[c] - grid.zero);
  for (int g = 0; g < m.groups; ++g) {
    float gsum = 0.0f;
    for (int b = m.group_first_block[g]; b < m.group_first_block[g + 1]; ++b) {
      int isum = 0;
      for (int i = 0; i < kBlockCols; ++i) {
        const int c = m.source_col[size_t(b) * kBlockCols + i];
        const int v = c < 0 ? 0 : codes[c] - shift;
        q[size_t(b) * kBlockCols + i] = int8_t(v);
        isum += v;
      }
      scale[b] = grid.scale;
      gsum = std::fma(grid.scale, float(isum), gsum);
    }
    group_sum[g] = gsum;
  }
  return shifted ? grid.scale * float(shift - grid.zero) : 0.0f;
}

}  // namespace

GridActivations grid_activations(const PackedMatrix& m, const float* x, int tokens, const ActivationQuant& a,
                                 bool keep_x_hat) {
  PTQ_ASSERT(tokens >= 0 && a.enabled() && a.bits <= 8);
  GridActivations out{ActivationBlocks(m, tokens), std::vector<float>(size_t(tokens), 0.0f),
                      std::vector<float>(keep_x_hat ? size_t(tokens) * m.cols : 0, 0.0f)};
  ActivationBlocks& blocks = out.blocks;
  std::vector<int16_t> codes(static_cast<size_t>(m.cols));
  for (int t = 0; t < tokens; ++t)
    out.offset[t] = grid_token(m, x + size_t(t) * m.cols, a, codes.data(),
                               blocks.q.data() + size_t(t) * m.blocks * kBlockCols,
                               blocks.scale.data() + size_t(t) * m.blocks,
                               blocks.group_sum.data() + size_t(t) * m.groups,
                               keep_x_hat ? out.x_hat.data() + size_t(t) * m.cols : nullptr);
  return out;
}

std::vector<float> dequantize_activations(const PackedMatrix& m, const ActivationBlocks& a) {
  std::vector<float> x(size_t(a.tokens) * m.cols, 0.0f);
  for (int t = 0; t < a.tokens; ++t)
    for (int p = 0; p < m.blocks * kBlockCols; ++p) {
      const int c = m.source_col[p];
      if (c >= 0) x[size_t(t) * m.cols + c] = a.token_scale(t)[p / kBlockCols] * float(a.token_q(t)[p]);
    }
  return x;
}

}  // namespace ptq::kernels
