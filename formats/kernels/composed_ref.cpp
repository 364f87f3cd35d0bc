// Scalar references of the composed linear's kernels (composed_kernels.h), the readable twins
// of simd_composed.h: the same fp32 operations in the same order, so all paths agree bit for bit.
#include <cmath>
#include <cstring>

#include "formats/kernels/composed_kernels.h"

namespace ptq::kernels {

namespace {

// (a, b) → (a + b, a − b) over pairs (e, e + h), e's bit h clear, for h = inner·2^s.
void butterflies_ref(float* v, int block, const HadamardFactor& f) {
  for (int h = f.inner; h < f.inner * f.order; h *= 2)
    for (int base = 0; base < block; base += 2 * h)
      for (int j = 0; j < h; ++j) {
        const float a = v[base + j], b = v[base + j + h];
        v[base + j] = a + b;
        v[base + j + h] = a - b;
      }
}

// v'[o, j, n] = Σ_i v[o, i, n]·M[i, j], i ascending, through scratch.
void dense_factor_ref(float* v, int block, const HadamardFactor& f, float* scratch) {
  const int m = f.order, inner = f.inner;
  for (int o = 0; o < f.outer; ++o)
    for (int j = 0; j < m; ++j)
      for (int n = 0; n < inner; ++n) {
        float acc = 0.0f;
        for (int i = 0; i < m; ++i)
          acc = std::fma(v[(size_t(o) * m + i) * inner + n], f.matrix[size_t(i) * f.stride + j], acc);
        scratch[(size_t(o) * m + j) * inner + n] = acc;
      }
  std::memcpy(v, scratch, sizeof(float) * block);
}

}  // namespace

void fwht_ref(const PackedHadamard& h, const float* x, float* out, float* scratch) {
  for (int i = 0; i < h.size; ++i) out[i] = h.signs.empty() ? x[i] : x[i] * h.signs[i];
  for (int b0 = 0; b0 < h.size; b0 += h.block)
    for (const HadamardFactor& f : h.factors) {
      if (f.power_of_two) butterflies_ref(out + b0, h.block, f);
      else dense_factor_ref(out + b0, h.block, f, scratch);
    }
  for (int i = 0; i < h.size; ++i) out[i] *= h.norm;
}

namespace {

template <class B, class Load>
void xb_any(const float* x, int ldx, int tokens, int depth, const B* b, int ldb, int n_begin, int n_end, float* y,
            int ldy, bool accumulate, Load load) {
  for (int t = 0; t < tokens; ++t)
    for (int n = n_begin; n < n_end; ++n) {
      float acc = 0.0f;
      for (int k = 0; k < depth; ++k) acc = std::fma(x[size_t(t) * ldx + k], load(b[size_t(k) * ldb + n]), acc);
      float& dst = y[size_t(t) * ldy + n];
      dst = accumulate ? dst + acc : acc;
    }
}

}  // namespace

void xb_ref(const float* x, int ldx, int tokens, int depth, const float* b, int ldb, int n_begin, int n_end, float* y,
            int ldy, bool accumulate) {
  xb_any(x, ldx, tokens, depth, b, ldb, n_begin, n_end, y, ldy, accumulate, [](float v) { return v; });
}

void xb_half_ref(const float* x, int ldx, int tokens, int depth, const uint16_t* b, int ldb, int n_begin, int n_end,
                 float* y, int ldy, bool accumulate) {
  xb_any(x, ldx, tokens, depth, b, ldb, n_begin, n_end, y, ldy, accumulate, f16_to_f32);
}

void csr_add_ref(const PackedSparse& s, const float* x, const float* /*x_blocks*/, int tokens, int row_begin,
                 int row_end, float* y) {
  constexpr int kChains = 16;
  for (int r = row_begin; r < row_end; ++r) {
    const int start = s.row_offsets[r], end = s.row_offsets[r + 1];
    if (start == end) continue;  // y stays as it is (y + 0 would turn −0 into +0)
    for (int t = 0; t < tokens; ++t) {
      const float* xt = x + size_t(t) * s.cols;
      float c[kChains] = {};
      for (int i = start; i < end; ++i) c[(i - start) % kChains] = std::fma(s.values[i], xt[s.col_ids[i]], c[(i - start) % kChains]);
      for (int half = kChains / 2; half >= 1; half /= 2)
        for (int l = 0; l < half; ++l) c[l] += c[l + half];
      y[size_t(t) * s.rows + r] += c[0];
    }
  }
}

ComposedKernels ref_composed_kernels() { return {fwht_ref, xb_ref, xb_half_ref, csr_add_ref, 0}; }

}  // namespace ptq::kernels
