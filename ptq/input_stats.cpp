// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "ptq/input_stats.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq {

// ---- InputStats -----------------------------------------------------------------------------
// Precision: tokens are summed in fp32 SSYRKs (fast, BLAS-threaded) into a chunk of at most
// kChunkTokens tokens — carried across batches, so small calibration windows share one — and
// each full chunk is added into an fp64 accumulator. The fp32 error is
// therefore bounded by the chunk length (~sqrt(2048)·2^-24 relative per entry) rather than by
// the total token count, while the bulk of the flops stay in fp32. Results can differ in the
// last bits with OpenBLAS's own thread count (OPENBLAS_NUM_THREADS), not with OpenMP's.
// Speed: everything besides the SSYRK walks memory contiguously (row-major) and the O(K²)
// passes run on all OpenMP threads, each entry computed the same way whatever the split, so the
// accumulation stays close to the cost of one SSYRK over all tokens (bench/bench_gptq.cpp).
namespace {
constexpr int kChunkTokens = 2048;
constexpr int kTile = 64;  // transpose tile of hessian(): 2 × 64 × 64 doubles stay in L1/L2

// acc(i, j) += part(i, j) for j >= i (upper triangles of row-major [k, k] matrices).
void add_upper(const Mat& part, MatD* acc) {
  const int k = static_cast<int>(part.rows());
#pragma omp parallel for schedule(dynamic, 32)
  for (int i = 0; i < k; ++i) {
    const float* src = &part(i, 0);
    double* dst = &(*acc)(i, 0);
#pragma omp simd
    for (int j = i; j < k; ++j) dst[j] += static_cast<double>(src[j]);
  }
}

// Rows zeroed by all threads: the first touch of a fresh K×K buffer is page clearing (0.13 GB
// for the fp64 accumulator at K = 4096), which a serial setZero() or BLAS's own beta pass
// leaves to one thread.
template <typename M>
void zero_in_parallel(M& m) {
  const Eigen::Index rows = m.rows();
#pragma omp parallel for schedule(static)
  for (Eigen::Index i = 0; i < rows; ++i) m.row(i).setZero();
}
}  // namespace

InputStats::InputStats(int k) : k_(k), abs_sum_(VecD::Zero(k)), abs_max_(VecD::Zero(k)) {
  PTQ_ASSERT(k > 0);
  resize_for_bulk(xtx_, k, k);
  zero_in_parallel(xtx_);
}

void InputStats::add_batch(const Mat& x) {
  PTQ_ASSERT(!finalized_, "InputStats: add_batch after hessian()");
  if (x.cols() != k_)
    throw Error("InputStats: batch has " + std::to_string(x.cols()) + " features, expected " +
                std::to_string(k_));
  if (partial_.rows() != k_) {
    resize_for_bulk(partial_, k_, k_);
    zero_in_parallel(partial_);
  }
  for (Eigen::Index t0 = 0; t0 < x.rows();) {
    const int t = static_cast<int>(std::min<Eigen::Index>(kChunkTokens - pending_, x.rows() - t0));
    // Row-major X [t, K]: C (+)= Xᵀ X, upper triangle of the row-major C.
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, k_, t, 1.0f, x.data() + t0 * k_, k_,
                pending_ > 0 ? 1.0f : 0.0f, partial_.data(), k_);
    pending_ += t;
    t0 += t;
    if (pending_ == kChunkTokens) fold_pending();
  }
  // Row by row (a column-wise sum would stride through X), in token order; threads take
  // fixed column slices, so every column's sum runs in the same order at any thread count.
  double* abs_sum = abs_sum_.data();
  double* abs_max = abs_max_.data();
  constexpr int kSlice = 256;
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < k_; c0 += kSlice) {
    const int c1 = std::min(k_, c0 + kSlice);
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      const float* row = &x(r, 0);
#pragma omp simd
      for (int c = c0; c < c1; ++c) {
        const double a = static_cast<double>(std::fabs(row[c]));
        abs_sum[c] += a;
        abs_max[c] = std::max(abs_max[c], a);
      }
    }
  }
  n_ += x.rows();
}

void InputStats::fold_pending() const {
  if (pending_ == 0) return;
  add_upper(partial_, &xtx_);
  pending_ = 0;
}

// Mirrors the upper triangle and scales in place, in square tiles so that the transposed writes
// stay in cache (a plain transpose of a row-major K x K matrix misses on every element). Each
// tile pair reads only upper entries and writes its own lower mirror, so tiles run in parallel.
void InputStats::finalize() const {
  if (finalized_) return;
  fold_pending();
  partial_ = Mat();
  const double scale = n_ > 0 ? 2.0 / static_cast<double>(n_) : 1.0;
  const int tiles = (k_ + kTile - 1) / kTile;
  MatD& h = xtx_;
#pragma omp parallel for schedule(dynamic, 1)
  for (int bi = 0; bi < tiles; ++bi)
    for (int bj = bi; bj < tiles; ++bj) {
      const int i0 = bi * kTile, i1 = std::min(k_, i0 + kTile);
      const int j0 = bj * kTile, j1 = std::min(k_, j0 + kTile);
      for (int i = i0; i < i1; ++i)
        for (int j = std::max(i, j0); j < j1; ++j) h(i, j) = h(j, i) = h(i, j) * scale;
    }
  finalized_ = true;
}

const MatD& InputStats::hessian() const {
  finalize();
  return xtx_;
}

VecD InputStats::mean_abs() const {
  PTQ_ASSERT(abs_sum_valid_, "InputStats: mean |x| of a rotated input is not tracked");
  return n_ > 0 ? VecD(abs_sum_ / static_cast<double>(n_)) : VecD::Zero(k_);
}

VecD InputStats::max_abs() const {
  PTQ_ASSERT(abs_sum_valid_, "InputStats: max |x| of a rotated input is not tracked");
  return abs_max_;
}

MatD InputStats::hessian_block(int begin, int size) const {
  PTQ_ASSERT(begin >= 0 && size > 0 && begin + size <= k_);
  if (finalized_) return xtx_.block(begin, begin, size, size);
  MatD h(size, size);
  for (int i = 0; i < size; ++i)
    for (int j = i; j < size; ++j) h(i, j) = h(j, i) = upper_sum(begin + i, begin + j);  // upper stored
  if (n_ > 0) h *= 2.0 / static_cast<double>(n_);
  return h;
}

void InputStats::scale_channels(const VecD& d) {
  PTQ_ASSERT(d.size() == k_);
  if (finalized_) {
    xtx_ = d.asDiagonal() * xtx_ * d.asDiagonal();
  } else {
    fold_pending();
    for (int i = 0; i < k_; ++i)
      for (int j = i; j < k_; ++j) xtx_(i, j) *= d[i] * d[j];
  }
  abs_sum_ = abs_sum_.cwiseProduct(d.cwiseAbs());
  abs_max_ = abs_max_.cwiseProduct(d.cwiseAbs());
}

void InputStats::transform_input(const MatD& t) {
  PTQ_ASSERT(t.rows() == k_ && t.cols() == k_);
  finalize();
  MatD th = t.transpose() * xtx_;
  xtx_.noalias() = th * t;
  xtx_ = (0.5 * (xtx_ + xtx_.transpose())).eval();  // exactly symmetric
  abs_sum_valid_ = false;
}

// ---- Error metric ---------------------------------------------------------------------------
double relative_output_error(const Mat& w, const Mat& w_hat, const MatD& h) {
  PTQ_ASSERT(w.rows() == w_hat.rows() && w.cols() == w_hat.cols() && h.rows() == w.cols());
  // tr(A H Aᵀ) = Σ (A H) ⊙ A over fixed chunks of rows, summed in chunk order: BLAS's threaded
  // GEMM splits the sums by its thread count, which moved the last digits (and the bytes of the
  // checkpoint metadata that records the error) between 1 and 2 threads. Inside the parallel
  // loop Eigen's GEMM runs on one thread, so each chunk's sum is the same whoever computes it.
  constexpr Eigen::Index kRows = 64;
  const size_t chunks = size_t((w.rows() + kRows - 1) / kRows);
  std::vector<double> num(chunks), den(chunks);
  parallel_for_each(chunks, [&](size_t c) {
    const Eigen::Index r0 = Eigen::Index(c) * kRows, rows = std::min(kRows, w.rows() - r0);
    const MatD a = w.middleRows(r0, rows).cast<double>();
    const MatD d = a - w_hat.middleRows(r0, rows).cast<double>();
    den[c] = (a * h).cwiseProduct(a).sum();
    num[c] = (d * h).cwiseProduct(d).sum();
  });
  double n = 0, total = 0;
  for (size_t c = 0; c < chunks; ++c) {
    n += num[c];
    total += den[c];
  }
  return total > 0 ? n / total : 0.0;
}

}  // namespace ptq
