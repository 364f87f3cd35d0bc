// GPTQ, step for step the reference `fasterquant` (IST-DASLab/gptq, gptq.py); docs/algorithms.md
// lists where and why this code deviates in precision only.
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 GEMM kernels and a false
// -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include "algorithms/gptq.h"

#include <cblas.h>
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
// number of threads: results are bit-identical. The chunk depends on N only: up to 256 rows,
// which keep the trailing GEMM near its peak (64-row chunks ran at ~2/3 of it), but small
// enough for ~16 chunks to balance the threads on small layers.
int row_chunk(int n) {
  const int per_16 = (n + 15) / 16;
  return std::clamp((per_16 + 15) / 16 * 16, 64, 256);
}

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

// The layer in GPTQ's working (act-order permuted) column order. H itself is never copied or
// permuted here: the factorisation reads it through `perm` (a K x K copy is 1 GB at K = 11008).
struct Problem {
  Mat w;                  // [N, K] weights, updated in place by the error propagation
  VecD h_diag;            // [K] diag H in working order, dead entries set to 1
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
  p.grouped = g.group_size > 0;
  p.scales.resize(n, g.num_groups(k));
  p.zeros.resize(n, g.num_groups(k));
  // The reference fits per-channel parameters before zeroing dead columns; keep that order.
  if (!p.grouped) fill_params(p.w, g, &p.scales, &p.zeros);
  VecD diag = h.diagonal();
  for (int i = 0; i < k; ++i) {
    if (diag[i] != 0.0) continue;
    diag[i] = 1.0;  // an input that is always zero: its weight can be anything, pick 0
    p.w.col(i).setZero();
  }
  if (p.grouped && o.static_groups) fill_params(p.w, g, &p.scales, &p.zeros);
  p.static_params = !p.grouped || o.static_groups;

  p.perm.resize(k);
  std::iota(p.perm.begin(), p.perm.end(), 0);
  if (o.act_order) {
    // Stable, so equal activations keep their column order and the result is reproducible.
    std::stable_sort(p.perm.begin(), p.perm.end(), [&](int a, int b) { return diag[a] > diag[b]; });
    Mat pw(n, k);
    for (int r = 0; r < n; ++r)  // row by row: a column gather would stride through all of W
      for (int j = 0; j < k; ++j) pw(r, j) = p.w(r, p.perm[j]);
    p.w = std::move(pw);
  }
  p.h_diag.resize(k);
  for (int j = 0; j < k; ++j) p.h_diag[j] = diag[p.perm[j]];
  p.codes.assign(size_t(n) * k, 0);
  return p;
}

// ---- The factor GPTQ propagates errors with -------------------------------------------------
// The reference needs U, the upper Cholesky factor of (H + λI)⁻¹ = UᵀU, and gets it with
// potrf → potri → potrf (5K³/3 flops). Cheaper, with no inverse ever formed:
//   J = the reversal permutation (J = Jᵀ = J⁻¹). Factor the reversed matrix J(H + λI)J = L Lᵀ
//   (lower, one potrf). Then H + λI = (JLJ)(JLJ)ᵀ and R = JLJ is *upper* triangular, so
//   (H + λI)⁻¹ = R⁻ᵀR⁻¹ = (R⁻¹)ᵀ(R⁻¹) with R⁻¹ = J L⁻¹ J upper triangular with a positive
//   diagonal. By uniqueness of the Cholesky factorisation U = J L⁻¹ J, i.e.
//   U_ij = (L⁻¹)_{K-1-i, K-1-j}: one potrf + one trtri (2K³/3 flops).
// Both run in fp64 and the factor is rounded to fp32 for the update loop (fp32 like the
// reference's). tests/test_gptq.cpp checks U against the potrf → inverse → potrf route.

// The lower triangle of J·P(H + λI)Pᵀ·J: reversed, act-order permuted, dead diagonal set to 1.
MatD reversed_damped_hessian(const MatD& h, const Problem& p, double lambda) {
  const int k = static_cast<int>(h.rows());
  MatD a(k, k);
  for (int i = 0; i < k; ++i) {
    const double* hrow = &h(p.perm[k - 1 - i], 0);
    for (int j = 0; j < i; ++j) a(i, j) = hrow[p.perm[k - 1 - j]];
    a(i, i) = p.h_diag[k - 1 - i] + lambda;
  }
  return a;
}

// U from the lower triangle of the reversed matrix (destroyed). False on a failed Cholesky or a
// non-finite factor (a status, not an error: the caller raises λ).
bool inverse_factor_from_reversed(MatD* reversed, Mat* out) {
  MatD& a = *reversed;
  const int k = static_cast<int>(a.rows());
  // The row-major lower triangle is the column-major upper triangle of the same buffer, so the
  // column-major 'U' calls factor it in place: LAPACKE's row-major entry points would transpose
  // K×K copies in and out, and OpenBLAS's 'U' trtri is several times faster than its 'L' one.
  // Column-major U with A = UᵀU is row-major L = Uᵀ with A = L·Lᵀ; U⁻¹ is row-major L⁻¹.
  if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', k, a.data(), k) != 0) return false;
  if (LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', k, a.data(), k) != 0) return false;
  Mat u = Mat::Zero(k, k);
  for (int i = 0; i < k; ++i) {
    const double* lrow = &a(k - 1 - i, 0);  // U_ij = (L⁻¹)(k-1-i, k-1-j), contiguous backwards
    for (int j = i; j < k; ++j) u(i, j) = static_cast<float>(lrow[k - 1 - j]);
  }
  if (!u.allFinite()) return false;
  *out = std::move(u);
  return true;
}

Mat damped_inverse_factor(const MatD& h, const Problem& p, const GptqOptions& o, const std::string& shape,
                  QuantLog* log) {
  const double mean_diag = p.h_diag.mean();
  double damp = o.damp;
  Mat hinv;
  for (int attempt = 0;; ++attempt) {
    MatD reversed = reversed_damped_hessian(h, p, damp * mean_diag);
    if (inverse_factor_from_reversed(&reversed, &hinv)) return hinv;
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

// ---- The quantization loop ------------------------------------------------------------------
// w_row: the row's weights at the start of the block.
grid::Params params_at(Problem& p, const GptqOptions& o, int r, int j, const float* w_row) {
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
    grid::Params prm = grid::find_params(w_row + j, width, o.grid);
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
  const float* w_row = &p.w(r, 0);
  std::copy(w_row + i1, w_row + i2, w1);
  for (int i = 0; i < count; ++i) {
    const int j = i1 + i;
    const grid::Params prm = params_at(p, o, r, j, w_row);
    const float code = grid::quantize_code(w1[i], prm, maxq);
    p.codes[size_t(r) * k + j] = static_cast<uint8_t>(code);
    const float e = (w1[i] - grid::dequantize_code(code, prm)) / hinv(j, j);
    const float* hrow = &hinv(j, i1);
#pragma omp simd
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
    if (i2 < k)  // single-threaded OpenBLAS here (BlasSingleThreaded), ~1.4x Eigen's GEMM speed
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, k - i2, count, -1.0f, err.data(),
                  o.block, &hinv(i1, i2), k, 1.0f, &p.w(r0, i2), k);
  }
}

// OpenBLAS (pthread build) runs its own thread pool. Inside our OpenMP region each thread calls
// it with one row chunk, so it must not fan out again: concurrent threaded level-3 calls are
// serialised by a lock and would oversubscribe the cores. Its thread count is process-global;
// restored on scope exit. Single-threaded sgemm with fixed chunk shapes also keeps every row's
// arithmetic independent of any thread count.
class BlasSingleThreaded {
 public:
  BlasSingleThreaded() : saved_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~BlasSingleThreaded() { openblas_set_num_threads(saved_); }
  BlasSingleThreaded(const BlasSingleThreaded&) = delete;
  BlasSingleThreaded& operator=(const BlasSingleThreaded&) = delete;

 private:
  int saved_;
};

void run_parallel(Problem& p, const Mat& hinv, const GptqOptions& o) {
  const int n = static_cast<int>(p.w.rows());
  BlasSingleThreaded blas_single;
  const int chunk = row_chunk(n), chunks = (n + chunk - 1) / chunk;
  std::exception_ptr failure;
#pragma omp parallel
  {
    FlushDenormals ftz;
#pragma omp for schedule(dynamic, 1)
    for (int c = 0; c < chunks; ++c) {
      try {
        quantize_rows(p, hinv, o, c * chunk, std::min(n, (c + 1) * chunk));
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

bool gptq_inverse_factor(const MatD& h, Mat* u) {
  const int k = static_cast<int>(h.rows());
  MatD reversed(k, k);
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) reversed(i, j) = h(k - 1 - i, k - 1 - j);
  return inverse_factor_from_reversed(&reversed, u);
}

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
  const Mat hinv = damped_inverse_factor(h, p, o, shape, log);
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
