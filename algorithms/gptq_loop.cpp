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
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <exception>
#include <vector>

#include "algorithms/gptq_internal.h"
#include "algorithms/grid.h"
#include "ptq/blas.h"

namespace ptq::gptq_detail {
namespace {

constexpr int kLanes = 16;  // rows per panel: one AVX-512 register of fp32

// Up to 256 rows keep the trailing GEMM near its peak (64-row chunks ran at ~2/3 of it); small
// enough for ~16 chunks to balance the threads on small layers. A function of N only.
int row_chunk(int n) {
  const int per_16 = (n + 15) / 16;
  return std::clamp((per_16 + 15) / 16 * 16, 64, 256);
}

// One row chunk's state: W⁰ (dead columns zeroed) and the corrections C, both in working column
// order; d_t holds the current block's D column-major ([column][row]) for the GEMM.
struct Chunk {
  int r0 = 0, rows = 0;
  Mat w0, corr;
  std::vector<float> d_t;
};

// Refills a thread's chunk buffers (reused across its chunks: fresh pages for every chunk cost
// page faults) for rows [r0, r1).
void load_chunk(const Problem& p, int block, int r0, int r1, Chunk& c) {
  const int k = static_cast<int>(p.w->cols());
  c.r0 = r0;
  c.rows = r1 - r0;
  c.w0.resize(c.rows, k);
  for (int r = 0; r < c.rows; ++r) {
    const float* src = &(*p.w)(r0 + r, 0);
    float* dst = &c.w0(r, 0);
    for (int j = 0; j < k; ++j) dst[j] = p.dead[p.perm[j]] ? 0.0f : src[p.perm[j]];
  }
  c.corr.resize(c.rows, k);
  c.corr.setZero();
  c.d_t.resize(static_cast<size_t>(block) * c.rows);
}

// Dynamic groups starting in [i1, i2) are fitted, as in the reference, on GPTQ's weights at the
// block's start: W⁰ + C[:, i1:m]·inverse(R̂[i1:m, i1:m]) over [i1, m), m the end of the last
// group starting in the block (derivation in docs/algorithms.md). One triangular multiply per
// block for the whole chunk; none for the first block, whose C is still zero.
void fit_dynamic_groups(Problem& p, const UpdateFactor& f, const GptqOptions& o, Chunk& c, int i1, int i2) {
  const int k = static_cast<int>(p.w->cols()), g = o.grid.group_size;
  const Mat& inv = f.group_fit[i1 / o.block];
  const int m = static_cast<int>(inv.rows());
  std::vector<float> gptq_w(static_cast<size_t>(c.rows) * m, 0.0f);  // [rows, m]
  if (i1 > 0) {
    for (int r = 0; r < c.rows; ++r) std::copy_n(&c.corr(r, i1), m, &gptq_w[static_cast<size_t>(r) * m]);
    cblas_strmm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasUnit, c.rows, m, 1.0f, inv.data(), m,
                gptq_w.data(), m);
  }
  for (int r = 0; r < c.rows; ++r) {
    float* row = &gptq_w[static_cast<size_t>(r) * m];
    const float* w0 = &c.w0(r, i1);
    for (int i = 0; i < m; ++i) row[i] += w0[i];
    for (int j = (i1 + g - 1) / g * g; j < i2; j += g) {
      const grid::Params prm = grid::find_params(row + (j - i1), std::min(k, j + g) - j, o.grid);
      p.scales(c.r0 + r, j / g) = prm.scale;
      p.zeros(c.r0 + r, j / g) = prm.zero;
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

// Columns [i1, i2) of the panel rows [s0, s0 + lanes) of the chunk. Unused lanes run on zeros
// with scale 1 and are never stored.
void quantize_panel(Problem& p, const UpdateFactor& f, const GptqOptions& o, Chunk& c, Panel& pn, int s0, int lanes,
                    int i1, int i2) {
  const int k = static_cast<int>(p.w->cols()), count = i2 - i1;
  const float maxq = static_cast<float>(o.grid.max_q());
  pn.x.assign(count, LaneRow{});
  pn.w0.assign(count, LaneRow{});
  for (int l = 0; l < lanes; ++l)
    for (int i = 0; i < count; ++i) {
      pn.w0[i].v[l] = c.w0(s0 + l, i1 + i);
      pn.x[i].v[l] = pn.w0[i].v[l] + c.corr(s0 + l, i1 + i);
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
      quantize_column(pn, i, maxq, code, pn.d[u]);
      const int col = p.perm[j];
      for (int l = 0; l < lanes; ++l) {
        p.codes[static_cast<size_t>(c.r0 + s0 + l) * k + col] = static_cast<uint8_t>(code.v[l]);
        c.d_t[static_cast<size_t>(i) * c.rows + s0 + l] = pn.d[u].v[l];
      }
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
                    Panel& panel) {
  const int k = static_cast<int>(p.w->cols());
  load_chunk(p, o.block, r0, r1, c);
  const bool dynamic_groups = p.grouped && !p.static_params;
  for (int i1 = 0; i1 < k; i1 += o.block) {
    const int i2 = std::min(i1 + o.block, k), count = i2 - i1;
    if (dynamic_groups && f.group_fit[i1 / o.block].size() > 0) fit_dynamic_groups(p, f, o, c, i1, i2);
    for (int s0 = 0; s0 < c.rows; s0 += kLanes) quantize_panel(p, f, o, c, panel, s0, std::min(kLanes, c.rows - s0), i1, i2);
    if (i2 < k)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c.rows, k - i2, count, 1.0f, c.d_t.data(), c.rows,
                  &f.rhat(i1, i2), k, 1.0f, &c.corr(0, i2), k);
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
#pragma omp for schedule(dynamic, 1)
    for (int ci = 0; ci < chunks; ++ci) {
      try {
        quantize_chunk(p, f, o, ci * chunk, std::min(n, (ci + 1) * chunk), c, panel);
      } catch (...) {  // nothing may leave an OpenMP region
#pragma omp critical(ptq_gptq_failure)
        if (!failure) failure = std::current_exception();
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace ptq::gptq_detail
