// The SIMD kernels of the composed linear's parts (composed_kernels.h: FWHT, x·B, CSR add), one
// template each over a vector-traits type V, included by each ISA's translation unit after it
// defines PTQ_SIMD (see simd_kernels.h). Same fp32 operations in the same order as
// composed_ref.cpp.
#include <algorithm>
#include <cstring>

#include "formats/kernels/composed_kernels.h"
#include "formats/kernels/simd_target.h"

namespace ptq::kernels {
namespace {

// ---- FWHT ----

// out[i] = x[i]·s[i] (s null: a copy) or out[i]·s (in place) for i < n, whole vectors then a tail.
template <class V>
PTQ_SIMD void multiply_each(const float* x, const float* s, float* out, int n) {
  int i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) V::storeu(out + i, s ? V::mul(V::loadu(x + i), V::loadu(s + i)) : V::loadu(x + i));
  if (i < n) {
    const int rest = n - i;
    V::store_first(out + i, s ? V::mul(V::load_first(x + i, rest), V::load_first(s + i, rest)) : V::load_first(x + i, rest), rest);
  }
}

template <class V>
PTQ_SIMD void scale_each(float* v, float c, int n) {
  const typename V::F cv = V::set1(c);
  int i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) V::storeu(v + i, V::mul(V::loadu(v + i), cv));
  if (i < n) V::store_first(v + i, V::mul(V::load_first(v + i, n - i), cv), n - i);
}

// One butterfly stage of span h over the block, vector by vector along each run of h.
template <class V>
PTQ_SIMD void stage_runs(float* v, int block, int h) {
  for (int base = 0; base < block; base += 2 * h) {
    float* a = v + base;
    float* b = a + h;
    int j = 0;
    for (; j + V::kLanes <= h; j += V::kLanes) {
      const typename V::F x = V::loadu(a + j), y = V::loadu(b + j);
      V::storeu(a + j, V::add(x, y));
      V::storeu(b + j, V::sub(x, y));
    }
    if (j < h) {
      const int rest = h - j;
      const typename V::F x = V::load_first(a + j, rest), y = V::load_first(b + j, rest);
      V::store_first(a + j, V::add(x, y), rest);
      V::store_first(b + j, V::sub(x, y), rest);
    }
  }
}

template <class V, int H>
PTQ_SIMD inline typename V::F butterfly_if(typename V::F x, int h_begin, int h_end) {
  if constexpr (H <= V::kMaxInRegisterSpan) {
    if (H >= h_begin && H < h_end) return V::template butterfly<H>(x);
  }
  return x;
}

// The stages of spans h in [h_begin, h_end) that stay inside one vector (powers of two below
// kLanes), all in one pass, in ascending h.
template <class V>
PTQ_SIMD void stages_in_register(float* v, int block, int h_begin, int h_end) {
  for (int e = 0; e < block; e += V::kLanes) {
    typename V::F x = V::loadu(v + e);
    x = butterfly_if<V, 1>(x, h_begin, h_end);
    x = butterfly_if<V, 2>(x, h_begin, h_end);
    x = butterfly_if<V, 4>(x, h_begin, h_end);
    x = butterfly_if<V, 8>(x, h_begin, h_end);
    V::storeu(v + e, x);
  }
}

template <class V>
PTQ_SIMD void butterflies(float* v, int block, const HadamardFactor& f) {
  const int h_end = f.inner * f.order;
  int h = f.inner;
  // With a power-of-two inner extent and whole vectors per block, the short spans pair lanes
  // l and l ^ h of one vector.
  const bool aligned = (f.inner & (f.inner - 1)) == 0 && block % V::kLanes == 0;
  if (aligned && h <= V::kMaxInRegisterSpan) {
    const int in_register_end = std::min(h_end, 2 * V::kMaxInRegisterSpan);
    stages_in_register<V>(v, block, h, in_register_end);
    h = in_register_end;
  }
  for (; h < h_end; h *= 2) stage_runs<V>(v, block, h);
}

// A dense ±1 factor: v'[o, j, n] = Σ_i v[o, i, n]·M[i, j] through scratch.
template <class V>
PTQ_SIMD void dense_factor(float* v, int block, const HadamardFactor& f, float* scratch) {
  using F = typename V::F;
  const int m = f.order, inner = f.inner;
  if (inner == 1) {
    // Row o of the block times M: broadcast v[o, i], FMA with M's row i (padded to whole vectors).
    for (int o = 0; o < f.outer; ++o) {
      const float* src = v + size_t(o) * m;
      for (int j0 = 0; j0 < m; j0 += V::kLanes) {
        F acc = V::zero();
        for (int i = 0; i < m; ++i) acc = V::fmadd(V::set1(src[i]), V::loadu(f.matrix.data() + size_t(i) * f.stride + j0), acc);
        V::store_first(scratch + size_t(o) * m + j0, acc, std::min(V::kLanes, m - j0));
      }
    }
  } else {
    for (int o = 0; o < f.outer; ++o)
      for (int j = 0; j < m; ++j)
        for (int n0 = 0; n0 < inner; n0 += V::kLanes) {
          const int count = std::min(V::kLanes, inner - n0);
          F acc = V::zero();
          for (int i = 0; i < m; ++i)
            acc = V::fmadd(V::set1(f.matrix[size_t(i) * f.stride + j]),
                           V::load_first(v + (size_t(o) * m + i) * inner + n0, count), acc);
          V::store_first(scratch + (size_t(o) * m + j) * inner + n0, acc, count);
        }
  }
  std::memcpy(v, scratch, sizeof(float) * block);
}

template <class V>
PTQ_SIMD void fwht_simd(const PackedHadamard& h, const float* x, float* out, float* scratch) {
  multiply_each<V>(x, h.signs.empty() ? nullptr : h.signs.data(), out, h.size);
  for (int b0 = 0; b0 < h.size; b0 += h.block)
    for (const HadamardFactor& f : h.factors) {
      if (f.power_of_two) butterflies<V>(out + b0, h.block, f);
      else dense_factor<V>(out + b0, h.block, f, scratch);
    }
  scale_each<V>(out, h.norm, h.size);
}

// ---- x·B ----

// Tokens [0, TB) × NV vectors of columns from n0 (count valid columns), whole depth.
template <class V, int TB, int NV, class B>
PTQ_SIMD void xb_tile(const float* x, int ldx, int depth, const B* b, int ldb, int n0, int count, float* y, int ldy,
                      bool accumulate) {
  using F = typename V::F;
  F acc[TB][NV];
  for (int t = 0; t < TB; ++t)
    for (int q = 0; q < NV; ++q) acc[t][q] = V::zero();
  for (int k = 0; k < depth; ++k) {
    F bv[NV];
    for (int q = 0; q < NV; ++q) bv[q] = V::loadu(b + size_t(k) * ldb + n0 + q * V::kLanes);
    for (int t = 0; t < TB; ++t) {
      const F xv = V::set1(x[size_t(t) * ldx + k]);
      for (int q = 0; q < NV; ++q) acc[t][q] = V::fmadd(xv, bv[q], acc[t][q]);
    }
  }
  for (int t = 0; t < TB; ++t)
    for (int q = 0; q < NV; ++q) {
      const int n = std::min(V::kLanes, count - q * V::kLanes);
      float* dst = y + size_t(t) * ldy + n0 + q * V::kLanes;
      if (n == V::kLanes) V::storeu(dst, accumulate ? V::add(V::loadu(dst), acc[t][q]) : acc[t][q]);
      else V::store_first(dst, accumulate ? V::add(V::load_first(dst, n), acc[t][q]) : acc[t][q], n);
    }
}

template <class V, int TB, class B>
PTQ_SIMD void xb_tokens(const float* x, int ldx, int depth, const B* b, int ldb, int n0, int count, float* y, int ldy,
                        bool accumulate) {
  constexpr int full = V::kXbVectors * V::kLanes;
  for (; count >= full; n0 += full, count -= full)
    xb_tile<V, TB, V::kXbVectors, B>(x, ldx, depth, b, ldb, n0, full, y, ldy, accumulate);
  if (count <= 0) return;
  // count < full: the last vectors, the final one partial.
  const int vectors = (count + V::kLanes - 1) / V::kLanes;
  if (vectors == 1) return xb_tile<V, TB, 1, B>(x, ldx, depth, b, ldb, n0, count, y, ldy, accumulate);
  if constexpr (V::kXbVectors >= 2)
    if (vectors == 2) return xb_tile<V, TB, 2, B>(x, ldx, depth, b, ldb, n0, count, y, ldy, accumulate);
  if constexpr (V::kXbVectors >= 3)
    if (vectors == 3) return xb_tile<V, TB, 3, B>(x, ldx, depth, b, ldb, n0, count, y, ldy, accumulate);
  if constexpr (V::kXbVectors >= 4)
    if (vectors == 4) return xb_tile<V, TB, 4, B>(x, ldx, depth, b, ldb, n0, count, y, ldy, accumulate);
  static_assert(V::kXbVectors <= 4);
}

constexpr int kXbTokens = 4;

template <class V, class B>
PTQ_SIMD void xb_simd(const float* x, int ldx, int tokens, int depth, const B* b, int ldb, int n_begin, int n_end,
                      float* y, int ldy, bool accumulate) {
  const int count = n_end - n_begin;
  if (count <= 0) return;
  int t = 0;
  for (; t + kXbTokens <= tokens; t += kXbTokens)
    xb_tokens<V, kXbTokens, B>(x + size_t(t) * ldx, ldx, depth, b, ldb, n_begin, count, y + size_t(t) * ldy, ldy, accumulate);
  const float* xt = x + size_t(t) * ldx;
  float* yt = y + size_t(t) * ldy;
  switch (tokens - t) {
    case 3: return xb_tokens<V, 3, B>(xt, ldx, depth, b, ldb, n_begin, count, yt, ldy, accumulate);
    case 2: return xb_tokens<V, 2, B>(xt, ldx, depth, b, ldb, n_begin, count, yt, ldy, accumulate);
    case 1: return xb_tokens<V, 1, B>(xt, ldx, depth, b, ldb, n_begin, count, yt, ldy, accumulate);
    default: return;
  }
}

// ---- CSR add: 16 chains per (token, row) ----

// One token: the row's values 16 at a time against x̃ gathered through the column ids.
template <class V>
PTQ_SIMD void csr_row_gathered(const PackedSparse& s, const float* xt, int start, int end, float* y) {
  using F = typename V::F;
  constexpr int kChains = V::kChainVectors * V::kLanes;
  static_assert(kChains == 16);
  F c[V::kChainVectors];
  for (int v = 0; v < V::kChainVectors; ++v) c[v] = V::zero();
  int i = start;
  for (; i + kChains <= end; i += kChains)
    for (int v = 0; v < V::kChainVectors; ++v) {
      const int p = i + v * V::kLanes;
      c[v] = V::fmadd(V::loadu(s.values.data() + p), V::gather(xt, s.col_ids.data() + p), c[v]);
    }
  for (int v = 0; v < V::kChainVectors; ++v) {
    const int p = i + v * V::kLanes, n = std::min(V::kLanes, end - p);
    if (n <= 0) break;
    c[v] = V::fmadd_first(V::load_first(s.values.data() + p, n), V::gather(xt, s.col_ids.data() + p, n), c[v], n);
  }
  *y += V::tree_sum(c);
}

// A block of V::kLanes tokens (x̃ transposed, [cols][lanes]; `tokens` of them real): chain j
// is one vector, lane l of it token l; each entry is a broadcast value times one load.
template <class V>
PTQ_SIMD void csr_row_tokens(const PackedSparse& s, const float* xb, int start, int end, int tokens, float* y) {
  using F = typename V::F;
  constexpr int kChains = 16;
  F c[kChains];
  for (int j = 0; j < kChains; ++j) c[j] = V::zero();
  const float* values = s.values.data();
  const int32_t* cols = s.col_ids.data();
  int i = start;
  for (; i + kChains <= end; i += kChains) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) c[j] = V::fmadd(V::set1(values[i + j]), V::loadu(xb + size_t(cols[i + j]) * V::kLanes), c[j]);
  }
#pragma GCC unroll 16
  for (int j = 0; j < kChains; ++j)
    if (i + j < end) c[j] = V::fmadd(V::set1(values[i + j]), V::loadu(xb + size_t(cols[i + j]) * V::kLanes), c[j]);
#pragma GCC unroll 4
  for (int half = kChains / 2; half >= 1; half /= 2) {
#pragma GCC unroll 8
    for (int j = 0; j < half; ++j) c[j] = V::add(c[j], c[j + half]);
  }
  float sum[V::kLanes];
  V::storeu(sum, c[0]);
  for (int l = 0; l < tokens; ++l) y[size_t(l) * s.rows] += sum[l];
}

template <class V>
PTQ_SIMD void csr_add_simd(const PackedSparse& s, const float* x, const float* x_blocks, int tokens, int row_begin,
                           int row_end, float* y) {
  for (int r = row_begin; r < row_end; ++r) {
    const int start = s.row_offsets[r], end = s.row_offsets[r + 1];
    if (start == end) continue;
    if (x_blocks) {
      for (int t0 = 0; t0 < tokens; t0 += V::kLanes)
        csr_row_tokens<V>(s, x_blocks + size_t(t0) * s.cols, start, end, std::min(V::kLanes, tokens - t0),
                          y + size_t(t0) * s.rows + r);
    } else {
      for (int t = 0; t < tokens; ++t) csr_row_gathered<V>(s, x + size_t(t) * s.cols, start, end, y + size_t(t) * s.rows + r);
    }
  }
}

template <class V>
ComposedKernels simd_composed_kernels() {
  return {&fwht_simd<V>, &xb_simd<V, float>, &xb_simd<V, uint16_t>, &csr_add_simd<V>, V::kLanes};
}

}  // namespace
}  // namespace ptq::kernels
