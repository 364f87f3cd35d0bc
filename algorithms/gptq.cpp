// GPTQ, step for step the reference `fasterquant` (IST-DASLab/gptq, gptq.py); docs/algorithms.md
// lists where and why this code deviates in precision only.
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 GEMM kernels and a false
// -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include "algorithms/gptq.h"

#include <lapacke.h>
#include <xmmintrin.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <exception>
#include <numeric>

#include "algorithms/grid.h"
#include "ptq/error.h"

namespace ptq {
namespace {

// Rows are independent in GPTQ (H is shared, the error of row r only moves row r), so the work
// is split into fixed row chunks. The chunk size never depends on the thread count, hence every
// row sees exactly the same sequence of operations — including the GEMM blocking — at any
// number of threads: results are bit-identical.
constexpr int kRowChunk = 64;

// Denormals in the error propagation slow the loop down by orders of magnitude and carry no
// information at quantization precision. MXCSR is per thread: each thread sets and restores.
class FlushDenormals {
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned saved_;
};

std::string shape_of(const Mat& w) {
  return "[" + std::to_string(w.rows()) + " x " + std::to_string(w.cols()) + "]";
}

std::string fmt_double(double v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// The layer in GPTQ's working (act-order permuted) column order.
struct Problem {
  Mat w;                  // [N, K] weights, updated in place by the error propagation
  MatD h;                 // [K, K]
  std::vector<int> perm;  // working position -> original column
  Mat scales, zeros;      // [N, G]
  bool grouped = false;
  bool static_params = false;  // scales/zeros fixed before the loop
  std::vector<uint8_t> codes;  // [N, K] in working order
};

void fill_params(const Mat& w, const QuantGrid& g, Mat* scales, Mat* zeros) {
  const int k = static_cast<int>(w.cols());
  for (int r = 0; r < w.rows(); ++r)
    for (int gi = 0; gi < g.num_groups(k); ++gi) {
      grid::Params p = grid::find_params(&w(r, grid::group_begin(g, gi)), grid::group_width(g, k, gi), g);
      (*scales)(r, gi) = p.scale;
      (*zeros)(r, gi) = p.zero;
    }
}

// Dead columns, fixed parameters and the act-order permutation, in the reference's order.
Problem prepare(const Mat& w, const MatD& h, const GptqOptions& o) {
  const int n = static_cast<int>(w.rows()), k = static_cast<int>(w.cols());
  const QuantGrid& g = o.grid;
  Problem p;
  p.w = w;
  p.h = h;
  p.grouped = g.group_size > 0;
  p.scales.resize(n, g.num_groups(k));
  p.zeros.resize(n, g.num_groups(k));
  // The reference fits per-channel parameters before zeroing dead columns; keep that order.
  if (!p.grouped) fill_params(p.w, g, &p.scales, &p.zeros);
  for (int i = 0; i < k; ++i) {
    if (p.h(i, i) != 0.0) continue;
    p.h(i, i) = 1.0;  // an input that is always zero: its weight can be anything, pick 0
    p.w.col(i).setZero();
  }
  if (p.grouped && o.static_groups) fill_params(p.w, g, &p.scales, &p.zeros);
  p.static_params = !p.grouped || o.static_groups;

  p.perm.resize(k);
  std::iota(p.perm.begin(), p.perm.end(), 0);
  if (o.act_order) {
    // Stable, so equal activations keep their column order and the result is reproducible.
    std::stable_sort(p.perm.begin(), p.perm.end(),
                     [&](int a, int b) { return p.h(a, a) > p.h(b, b); });
    Mat pw(n, k);
    MatD ph(k, k);
    for (int j = 0; j < k; ++j) pw.col(j) = p.w.col(p.perm[j]);
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) ph(i, j) = p.h(p.perm[i], p.perm[j]);
    p.w = std::move(pw);
    p.h = std::move(ph);
  }
  p.codes.assign(size_t(n) * k, 0);
  return p;
}

// Upper Cholesky factor U of (H + λI)⁻¹ (so (H + λI)⁻¹ = UᵀU), via dpotrf → dpotri → dpotrf in
// fp64: the inverse squares the condition number, which fp32 handles badly for large K. Returns
// false on any LAPACK failure (a status, not an error: the caller raises λ).
bool inverse_cholesky_upper(const MatD& h, double lambda, Mat* out) {
  const int k = static_cast<int>(h.rows());
  MatD a = h;
  a.diagonal().array() += lambda;
  if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', k, a.data(), k) != 0) return false;
  if (LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', k, a.data(), k) != 0) return false;
  for (int i = 0; i < k; ++i)  // dpotri fills only the lower triangle
    for (int j = i + 1; j < k; ++j) a(i, j) = a(j, i);
  if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', k, a.data(), k) != 0) return false;
  Mat u = a.triangularView<Eigen::Upper>().toDenseMatrix().cast<float>();
  if (!u.allFinite()) return false;
  *out = std::move(u);
  return true;
}

Mat damped_inverse_factor(const MatD& h, const GptqOptions& o, const std::string& shape,
                          QuantLog* log) {
  const double mean_diag = h.diagonal().mean();
  double damp = o.damp;
  Mat hinv;
  for (int attempt = 0;; ++attempt) {
    if (inverse_cholesky_upper(h, damp * mean_diag, &hinv)) return hinv;
    if (attempt == o.max_retries)
      throw Error("gptq: Cholesky of the Hessian failed for layer " + shape + " even with damp=" +
                  fmt_double(damp) + " after " + std::to_string(o.max_retries) + " retries");
    const double next = damp > 0 ? damp * 10 : 0.01;
    if (log)
      log->messages.push_back("gptq " + shape + ": Cholesky failed at damp=" + fmt_double(damp) +
                              ", damping raised to " + fmt_double(next));
    damp = next;
  }
}

grid::Params params_at(Problem& p, const GptqOptions& o, int r, int j) {
  const int g = o.grid.group_size;
  if (!p.grouped) return {p.scales(r, 0), p.zeros(r, 0)};
  if (p.static_params) {
    const int gi = p.perm[j] / g;
    return {p.scales(r, gi), p.zeros(r, gi)};
  }
  const int gi = j / g;
  if (j % g == 0) {
    // Read from the block-start weights, as the reference does (it fits on W, not on the
    // block copy W1 that already carries this block's updates).
    const int width = std::min(g, static_cast<int>(p.w.cols()) - j);
    grid::Params prm = grid::find_params(&p.w(r, j), width, o.grid);
    p.scales(r, gi) = prm.scale;
    p.zeros(r, gi) = prm.zero;
  }
  return {p.scales(r, gi), p.zeros(r, gi)};
}

// Columns [i1, i2) of row r, one at a time: quantize, then push the scaled error onto the rest
// of the block. err_row receives (w - q) / Hinv_jj for the trailing GEMM.
void quantize_block_row(Problem& p, const Mat& hinv, const GptqOptions& o, int r, int i1, int i2,
                        float* w1, float* err_row) {
  const int k = static_cast<int>(p.w.cols()), count = i2 - i1, maxq = o.grid.max_q();
  std::copy(&p.w(r, i1), &p.w(r, i1) + count, w1);
  for (int i = 0; i < count; ++i) {
    const int j = i1 + i;
    const grid::Params prm = params_at(p, o, r, j);
    const float code = grid::quantize_code(w1[i], prm, maxq);
    p.codes[size_t(r) * k + j] = static_cast<uint8_t>(code);
    const float e = (w1[i] - grid::dequantize_code(code, prm)) / hinv(j, j);
    const float* hrow = &hinv(j, i1);
    for (int t = i + 1; t < count; ++t) w1[t] -= e * hrow[t];
    err_row[i] = e;
  }
}

// All blocks for rows [r0, r1). After each block the rest of the row takes the whole block's
// error in one GEMM (the lazy batch update): W[:, i2:] -= Err1 · Hinv[i1:i2, i2:].
void quantize_rows(Problem& p, const Mat& hinv, const GptqOptions& o, int r0, int r1) {
  const int k = static_cast<int>(p.w.cols()), rows = r1 - r0;
  Mat err(rows, o.block);
  std::vector<float> w1(o.block);
  for (int i1 = 0; i1 < k; i1 += o.block) {
    const int i2 = std::min(i1 + o.block, k), count = i2 - i1;
    for (int r = r0; r < r1; ++r) quantize_block_row(p, hinv, o, r, i1, i2, w1.data(), &err(r - r0, 0));
    if (i2 < k)
      p.w.block(r0, i2, rows, k - i2).noalias() -=
          err.leftCols(count) * hinv.block(i1, i2, count, k - i2);
  }
}

void run_parallel(Problem& p, const Mat& hinv, const GptqOptions& o) {
  const int n = static_cast<int>(p.w.rows());
  const int chunks = (n + kRowChunk - 1) / kRowChunk;
  std::exception_ptr failure;
#pragma omp parallel
  {
    FlushDenormals ftz;
#pragma omp for schedule(dynamic, 1)
    for (int c = 0; c < chunks; ++c) {
      try {
        quantize_rows(p, hinv, o, c * kRowChunk, std::min(n, (c + 1) * kRowChunk));
      } catch (...) {  // nothing may leave an OpenMP region
#pragma omp critical(ptq_gptq_failure)
        if (!failure) failure = std::current_exception();
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
}

QuantizedWeight assemble(const Problem& p, const GptqOptions& o) {
  const int n = static_cast<int>(p.w.rows()), k = static_cast<int>(p.w.cols());
  const int g = o.grid.group_size;
  QuantizedWeight out;
  out.rows = n;
  out.cols = k;
  out.grid = o.grid;
  out.scales = p.scales;
  out.zeros = p.zeros;
  out.q.resize(size_t(n) * k);
  out.g_idx.resize(k);
  for (int j = 0; j < k; ++j) {
    const int c = p.perm[j];
    // Static groups keep the original column's group; dynamic ones are numbered in the order
    // they were fitted (permuted order), so g_idx[perm[j]] = j / g.
    out.g_idx[c] = !p.grouped ? 0 : (p.static_params ? c / g : j / g);
  }
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < k; ++j) out.q[size_t(r) * k + p.perm[j]] = p.codes[size_t(r) * k + j];
  return out;
}

}  // namespace

QuantizedWeight gptq_quantize(const Mat& w, const MatD& h, const GptqOptions& o, QuantLog* log) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string shape = shape_of(w);
  grid::validate(o.grid, "gptq");
  if (h.rows() != w.cols() || h.cols() != w.cols())
    throw Error("gptq: layer " + shape + " got a Hessian of " + std::to_string(h.rows()) + " x " +
                std::to_string(h.cols()));
  if (!h.allFinite() || !w.allFinite())
    throw Error("gptq: layer " + shape + " has non-finite weights or input statistics");
  if (o.block < 1 || o.damp < 0) throw Error("gptq: block must be >= 1 and damp >= 0");
  FlushDenormals ftz;
  Problem p = prepare(w, h, o);
  const Mat hinv = damped_inverse_factor(p.h, o, shape, log);
  run_parallel(p, hinv, o);
  QuantizedWeight out = assemble(p, o);
  if (log) log->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

namespace {

class Gptq final : public WeightQuantizer {
 public:
  explicit Gptq(const Spec& spec) {
    opt_.grid = grid::grid_from_spec(spec);
    opt_.act_order = spec.flag("act_order");
    opt_.static_groups = spec.flag("static_groups");
    opt_.damp = spec.double_value("damp", 0.01);
    opt_.block = spec.int_value("block", 128);
    spec.check_all_used();
    if (opt_.damp < 0 || opt_.block < 1)
      throw Error("spec '" + spec.to_string() + "': damp must be >= 0 and block >= 1");
  }
  std::string spec() const override {
    std::string s = "gptq(" + grid::grid_spec_args(opt_.grid);
    if (opt_.act_order) s += ",act_order";
    if (opt_.static_groups) s += ",static_groups";
    if (opt_.damp != 0.01) s += ",damp=" + fmt_double(opt_.damp);
    if (opt_.block != 128) s += ",block=" + std::to_string(opt_.block);
    return s + ")";
  }
  const QuantGrid& grid() const override { return opt_.grid; }
  bool needs_stats() const override { return true; }
  QuantizedWeight quantize(const Mat& w, const InputStats* stats, QuantLog* log) const override {
    if (!stats || stats->tokens() == 0)
      throw Error("gptq: layer " + shape_of(w) + " needs calibration inputs, got none");
    if (stats->k() != w.cols())
      throw Error("gptq: layer " + shape_of(w) + " got input statistics for " +
                  std::to_string(stats->k()) + " features");
    return gptq_quantize(w, stats->hessian(), opt_, log);
  }

 private:
  GptqOptions opt_;
};

const QuantizerRegistrar kRegister("gptq", [](const Spec& s) -> std::unique_ptr<WeightQuantizer> {
  return std::make_unique<Gptq>(s);
});

}  // namespace
}  // namespace ptq
