// GPTQ's column loop in the R̂ form (docs/algorithms.md, "GPTQ"):
//   for each block [i1, i2) of `block` columns, for each column j in it:
//     Q_j = quantize(Ŵ_j),  D_j = W⁰_j − Q_j,  Ŵ_t += D_j·R̂_jt for the block's later columns t,
//   then the rest of the row takes the whole block at once (the lazy batch, one GEMM):
//     C[:, i2:] += D[:, i1:i2] · R̂[i1:i2, i2:],
// where Ŵ = W⁰ + C at the block's start and C collects every earlier block's corrections.
//
// Rows are independent (H is shared), so the work is split into fixed row chunks: each chunk
// runs every block including its own trailing GEMM, and since the chunks depend on N only,
// every row sees the same operations at any thread count. Inside a block a chunk is worked in
// panels of kLanes rows with the column running across the panel, so the per-column steps
// (quantize, error, rank-1 update of the block) are vector instructions over rows.
// A chunk keeps W⁰ and C transposed ([column][row]): a panel's column is then one contiguous
// vector, a block's columns are one contiguous stripe, and the trailing GEMM runs with R̂ as
// its transposed operand, which OpenBLAS packs ~10% faster than the row-major orientation.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <exception>
#include <span>
#include <vector>

#include "algorithms/gptq_internal.h"
#include "algorithms/grid.h"
#include "ptq/blas.h"
#include "ptq/tensor.h"

namespace ptq::gptq_detail {
namespace {

constexpr int kLanes = 16;  // rows per panel: one AVX-512 register of fp32

// Up to 256 rows keep the trailing GEMM near its peak (64-row chunks ran at ~2/3 of it); small
// enough for ~16 chunks to balance the threads on small layers. A function of N only.
int row_chunk(int n) {
  const int per_16 = (n + 15) / 16;
  return std::clamp((per_16 + 15) / 16 * 16, 64, 256);
}

// One row chunk's state, in working column order and transposed ([column][row]): W⁰ (dead
// columns zeroed) and the corrections C; d_t holds the current block's D ([column][row]).
// C is written by the first block's GEMM (beta 0) before anything reads it, so it is never
// zeroed.
struct Chunk {
  int r0 = 0, rows = 0;
  Mat w0t, corrt;  // [K, rows]
  std::vector<float> d_t;
};

// Refills a thread's chunk buffers (reused across its chunks: fresh pages for every chunk cost
// page faults) for rows [r0, r1), kLanes rows at a time: each row is first gathered through the
// act-order permutation on its own (random reads within one row, which stays in L1), then the
// kLanes rows are written out as columns.
void load_chunk(const Problem& p, int block, int r0, int r1, Chunk& c, std::vector<float>& rows_buf) {
  const int k = static_cast<int>(p.w->cols());
  c.r0 = r0;
  c.rows = r1 - r0;
  resize_for_bulk(c.w0t, k, c.rows);
  resize_for_bulk(c.corrt, k, c.rows);
  rows_buf.resize(static_cast<size_t>(kLanes + 1) * k);
  const std::span<float> row_copy(rows_buf.data() + static_cast<size_t>(kLanes) * k, k);
  for (int s0 = 0; s0 < c.rows; s0 += kLanes) {
    const int lanes = std::min(kLanes, c.rows - s0);
    for (int l = 0; l < lanes; ++l) {
      float* dst = &rows_buf[static_cast<size_t>(l) * k];
      // A sequential copy first: gathering straight from W misses cache on every line.
      std::copy_n(&(*p.w)(r0 + s0 + l, 0), k, row_copy.data());
      for (int j = 0; j < k; ++j) dst[j] = p.dead[p.perm[j]] ? 0.0f : row_copy[p.perm[j]];
    }
    for (int j = 0; j < k; ++j) {
      float* dst = &c.w0t(j, s0);
      for (int l = 0; l < lanes; ++l) dst[l] = rows_buf[static_cast<size_t>(l) * k + j];
    }
  }
  c.d_t.resize(static_cast<size_t>(block) * c.rows);
}

// Dynamic groups starting in [i1, i2) are fitted, as in the reference, on GPTQ's weights at the
// block's start: W⁰ + C[:, i1:m]·inverse(R̂[i1:m, i1:m]) over [i1, m), m the end of the last
// group starting in the block (derivation in docs/algorithms.md). One triangular multiply per
// block for the whole chunk, transposed like the chunk; none for the first block, whose C is
// still zero.
void fit_dynamic_groups(Problem& p, const UpdateFactor& f, const GptqOptions& o, Chunk& c, int i1, int i2) {
  const int k = static_cast<int>(p.w->cols()), g = o.grid.group_size;
  const Mat& inv = f.group_fit[i1 / o.block];
  const int m = static_cast<int>(inv.rows());
  std::vector<float> gptq_wt(static_cast<size_t>(m) * c.rows);  // [m, rows]
  const float* w0t = &c.w0t(i1, 0);
  if (i1 > 0) {
    std::copy_n(&c.corrt(i1, 0), gptq_wt.size(), gptq_wt.data());
    cblas_strmm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasUnit, m, c.rows, 1.0f, inv.data(), m,
                gptq_wt.data(), c.rows);
    for (size_t e = 0; e < gptq_wt.size(); ++e) gptq_wt[e] += w0t[e];
  } else {
    std::copy_n(w0t, gptq_wt.size(), gptq_wt.data());
  }
  if (p.fit_group) {  // SpQR: each group's rows at once, row-major
    std::vector<float> g_rows;
    for (int j = (i1 + g - 1) / g * g; j < i2; j += g) {
      const int width = std::min(k, j + g) - j;
      g_rows.resize(static_cast<size_t>(c.rows) * width);
      for (int r = 0; r < c.rows; ++r)
        for (int i = 0; i < width; ++i)
          g_rows[static_cast<size_t>(r) * width + i] = gptq_wt[static_cast<size_t>(j - i1 + i) * c.rows + r];
      p.fit_group(p, c.r0, c.rows, group_of(p, o, j), j, width, g_rows.data());
    }
    return;
  }
  std::vector<float> row(m);  // one row's [i1, i1 + m), contiguous for find_params
  const int unit = o.grid.super_width();  // a super-block's groups are fitted together
  std::vector<float> original(p.super_codes ? unit : 0);
  for (int r = 0; r < c.rows; ++r) {
    for (int i = 0; i < m; ++i) row[i] = gptq_wt[static_cast<size_t>(i) * c.rows + r];
    for (int j = (i1 + unit - 1) / unit * unit; j < i2; j += unit) {
      const int width = std::min(k, j + unit) - j;
      if (p.super_codes) {
        // Its groups are runs of original columns: under group_aware the unit's working columns
        // are one super-block's, permuted inside it, so they go back to their places first.
        const int block = p.original_groups ? p.perm[j] / unit : j / unit;
        for (int i = 0; i < width; ++i) original[p.perm[j + i] - block * unit] = row[j - i1 + i];
        p.super_codes->record(c.r0 + r, block, grid::fit_super_block(original.data(), width, o.grid), p.scales,
                              p.zeros);
        continue;
      }
      const grid::Params prm = grid::find_params(row.data() + (j - i1), width, o.grid);
      p.scales(c.r0 + r, group_of(p, o, j)) = prm.scale;
      p.zeros(c.r0 + r, group_of(p, o, j)) = prm.zero;
    }
  }
}

// Scratch of one panel: Ŵ and W⁰ of the block's columns, [column][lane], 64-byte aligned so
// that every column is one cache line.
struct alignas(64) LaneRow {
  float v[kLanes];
};

// Columns are quantized kStep at a time: each one is quantized and pushed onto the others of
// its step, then the step's columns update the rest of the block together, so each later
// column is loaded and stored once per step rather than once per column. The additions reach
// every column in the same order as one column at a time, so the result is identical.
constexpr int kStep = 4;

struct Panel {
  std::vector<LaneRow> x, w0;   // [count]
  LaneRow d[kStep];             // D of the step's columns
  float scale[kLanes], zero[kLanes];
  int loaded_group = -1;
};

void load_params(const Problem& p, const Chunk& c, int s0, int lanes, int gi, Panel& pn) {
  if (gi == pn.loaded_group) return;
  for (int l = 0; l < lanes; ++l) {
    pn.scale[l] = p.scales(c.r0 + s0 + l, gi);
    pn.zero[l] = p.zeros(c.r0 + s0 + l, gi);
  }
  pn.loaded_group = gi;
}

// grid::quantize_code and grid::dequantize_code over the lanes of column i; D into d. Written
// out rather than called: through the calls (Params per lane, int maxq) GCC 12 no longer
// vectorises the loop. The textbook test pins the two to the same codes.
void quantize_column(Panel& pn, int i, float maxq, LaneRow& code, LaneRow& d) {
  const float* x = pn.x[i].v;
  const float* w0 = pn.w0[i].v;
#pragma omp simd
  for (int l = 0; l < kLanes; ++l) {
    code.v[l] = std::clamp(std::nearbyint(x[l] / pn.scale[l]) + pn.zero[l], 0.0f, maxq);
    d.v[l] = w0[l] - pn.scale[l] * (code.v[l] - pn.zero[l]);
  }
}

// The same on an additive grid (QuantGrid::additive): pn.zero holds the offsets.
void quantize_column_additive(Panel& pn, int i, float maxq, LaneRow& code, LaneRow& d) {
  const float* x = pn.x[i].v;
  const float* w0 = pn.w0[i].v;
#pragma omp simd
  for (int l = 0; l < kLanes; ++l) {
    code.v[l] = std::clamp(std::nearbyint((x[l] - pn.zero[l]) / pn.scale[l]), 0.0f, maxq);
    d.v[l] = w0[l] - (pn.scale[l] * code.v[l] + pn.zero[l]);
  }
}

// SpQR's column step (Problem::round_after_zero, outlier_threshold): the code of x, and at a
// weight whose error passes the outlier rule the kept value grid + fp16(x − grid), recorded in
// the problem by original column; D against whichever value the weight ends up with.
void quantize_column_spqr(Problem& p, const Chunk& c, int s0, int lanes, int col, float r_jj, Panel& pn, int i,
                          float maxq, LaneRow& code, LaneRow& d) {
  const float* x = pn.x[i].v;
  const float* w0 = pn.w0[i].v;
  const int k = static_cast<int>(p.w->cols());
  for (int l = 0; l < kLanes; ++l) {
    const float q = p.round_after_zero ? std::nearbyint(x[l] / std::max(pn.scale[l], 1e-9f) + pn.zero[l])
                                       : std::nearbyint(x[l] / pn.scale[l]) + pn.zero[l];
    code.v[l] = std::clamp(q, 0.0f, maxq);
    const float grid_value = pn.scale[l] * (code.v[l] - pn.zero[l]);
    float kept = grid_value;
    const float e = (x[l] - grid_value) * r_jj;
    if (l < lanes && p.has_outliers() && e * e > p.outlier_threshold) {
      const float residual = f16_to_f32(f32_to_f16(x[l] - grid_value));
      kept = grid_value + residual;
      const size_t at = static_cast<size_t>(c.r0 + s0 + l) * k + col;
      p.is_outlier[at] = 1;
      p.outlier_residual[at] = residual;
    }
    d.v[l] = w0[l] - kept;
  }
}

// x[t] += Σ_u d[u]·R̂(j0 + u, t) for t in [t0, t1), u in order.
template <int Steps>
void update_columns(Panel& pn, const float* const* rrows, int t0, int t1) {
  for (int t = t0; t < t1; ++t) {
    float* xt = pn.x[t].v;
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      float v = xt[l];
      for (int u = 0; u < Steps; ++u) v = std::fma(pn.d[u].v[l], rrows[u][t], v);
      xt[l] = v;
    }
  }
}

// The codes of working column i (original column col) into the layer, its D into d_t.
void store_column(Problem& p, Chunk& c, int s0, int lanes, int i, int col, const LaneRow& code, const LaneRow& d) {
  const int k = static_cast<int>(p.w->cols());
  uint8_t bytes[kLanes];
#pragma omp simd
  for (int l = 0; l < kLanes; ++l) bytes[l] = static_cast<uint8_t>(static_cast<int>(code.v[l]));
  uint8_t* out = &p.codes[static_cast<size_t>(c.r0 + s0) * k + col];
  float* d_col = &c.d_t[static_cast<size_t>(i) * c.rows + s0];
  if (lanes == kLanes) {  // a fixed count: unrolled, no per-lane bound check
#pragma GCC unroll 16
    for (int l = 0; l < kLanes; ++l) out[static_cast<size_t>(l) * k] = bytes[l];
    std::copy_n(d.v, kLanes, d_col);
  } else {
    for (int l = 0; l < lanes; ++l) out[static_cast<size_t>(l) * k] = bytes[l];
    std::copy_n(d.v, lanes, d_col);
  }
}

// Columns [i1, i2) of the panel rows [s0, s0 + lanes) of the chunk. Unused lanes run on zeros
// with scale 1 and are never stored.
void quantize_panel(Problem& p, const UpdateFactor& f, const GptqOptions& o, Chunk& c, Panel& pn, int s0, int lanes,
                    int i1, int i2) {
  const int count = i2 - i1;
  const float maxq = static_cast<float>(o.grid.max_q());
  pn.x.resize(count);
  pn.w0.resize(count);
  if (lanes < kLanes) {
    std::fill(pn.x.begin(), pn.x.end(), LaneRow{});
    std::fill(pn.w0.begin(), pn.w0.end(), LaneRow{});
  }
  for (int i = 0; i < count; ++i) {
    const float* w0 = &c.w0t(i1 + i, s0);
    const float* corr = &c.corrt(i1 + i, s0);
    if (lanes == kLanes && i1 > 0) {  // the common case, as one vector
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        pn.w0[i].v[l] = w0[l];
        pn.x[i].v[l] = w0[l] + corr[l];
      }
    } else {
      for (int l = 0; l < lanes; ++l) {
        pn.w0[i].v[l] = w0[l];
        pn.x[i].v[l] = i1 > 0 ? w0[l] + corr[l] : w0[l];  // the first block's C is zero, unwritten
      }
    }
  }
  std::fill_n(pn.scale, kLanes, 1.0f);
  std::fill_n(pn.zero, kLanes, 0.0f);
  pn.loaded_group = -1;
  LaneRow code;
  for (int i0 = 0; i0 < count; i0 += kStep) {
    const int steps = std::min(kStep, count - i0);
    const float* rrows[kStep];
    for (int u = 0; u < steps; ++u) {
      const int i = i0 + u, j = i1 + i;
      rrows[u] = &f.rhat(j, i1);
      load_params(p, c, s0, lanes, group_of(p, o, j), pn);
      if (p.round_after_zero || p.has_outliers())
        quantize_column_spqr(p, c, s0, lanes, p.perm[j], f.r_diag[j], pn, i, maxq, code, pn.d[u]);
      else if (o.grid.additive)
        quantize_column_additive(pn, i, maxq, code, pn.d[u]);
      else
        quantize_column(pn, i, maxq, code, pn.d[u]);
      store_column(p, c, s0, lanes, i, p.perm[j], code, pn.d[u]);
      for (int t = i + 1; t < i0 + steps; ++t) {  // the rest of this step, column by column
        float* xt = pn.x[t].v;
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) xt[l] = std::fma(pn.d[u].v[l], rrows[u][t], xt[l]);
      }
    }
    if (i0 + steps < count) update_columns<kStep>(pn, rrows, i0 + kStep, count);  // steps == kStep
  }
}

void quantize_chunk(Problem& p, const UpdateFactor& f, const GptqOptions& o, int r0, int r1, Chunk& c,
                    Panel& panel, std::vector<float>& rows_buf) {
  const int k = static_cast<int>(p.w->cols());
  load_chunk(p, o.block, r0, r1, c, rows_buf);
  const bool dynamic_groups = p.grouped && !p.static_params;
  for (int i1 = 0; i1 < k; i1 += o.block) {
    const int i2 = std::min(i1 + o.block, k), count = i2 - i1;
    if (dynamic_groups && f.group_fit[i1 / o.block].size() > 0) fit_dynamic_groups(p, f, o, c, i1, i2);
    for (int s0 = 0; s0 < c.rows; s0 += kLanes) quantize_panel(p, f, o, c, panel, s0, std::min(kLanes, c.rows - s0), i1, i2);
    if (i2 < k)  // Cᵀ[i2:, :] += R̂[i1:i2, i2:]ᵀ · Dᵀ; the first block writes C
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k - i2, c.rows, count, 1.0f, &f.rhat(i1, i2), k,
                  c.d_t.data(), c.rows, i1 > 0 ? 1.0f : 0.0f, &c.corrt(i2, 0), c.rows);
  }
}

}  // namespace

void run_update_loop(Problem& p, const UpdateFactor& f, const GptqOptions& o) {
  const int n = static_cast<int>(p.w->rows());
  BlasSingleThreaded blas_single;
  const int chunk = row_chunk(n), chunks = (n + chunk - 1) / chunk;
  std::exception_ptr failure;
#pragma omp parallel
  {
    FlushDenormals ftz;
    Chunk c;
    Panel panel;
    std::vector<float> rows_buf;
#pragma omp for schedule(dynamic, 1)
    for (int ci = 0; ci < chunks; ++ci) {
      try {
        quantize_chunk(p, f, o, ci * chunk, std::min(n, (ci + 1) * chunk), c, panel, rows_buf);
      } catch (...) {  // nothing may leave an OpenMP region
#pragma omp critical(ptq_gptq_failure)
        if (!failure) failure = std::current_exception();
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace ptq::gptq_detail
