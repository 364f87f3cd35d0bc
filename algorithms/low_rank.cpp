// Weighted truncated SVD (algorithms/low_rank.h). The factorisation of H is Eigen's fp64 LLT
// and the products E·S and the back-substitution are Eigen's (single-threaded in ptq); the SVD
// is LAPACK's dgesdd, run single-threaded so its result does not depend on the thread count.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"  // GCC bug 105329 in std::string concatenation
#include "algorithms/low_rank.h"

#include <lapacke.h>

#include <Eigen/Cholesky>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "ptq/blas.h"
#include "ptq/error.h"
#include "ptq/spec.h"

namespace ptq {
namespace {

using ColMat = Eigen::MatrixXd;

struct Svd {
  ColMat u;   // [N, m]
  VecD s;     // [m]
  ColMat vt;  // [m, K]
};

Svd thin_svd(const MatD& a) {
  const int n = int(a.rows()), k = int(a.cols()), m = std::min(n, k);
  ColMat work = a;  // dgesdd overwrites its input
  // Threaded, OpenBLAS's dgesdd gives different last bits at different thread counts.
  BlasSingleThreaded single;
  Svd out{ColMat(n, m), VecD(m), ColMat(m, k)};
  const int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', n, k, work.data(), n, out.s.data(), out.u.data(), n,
                                  out.vt.data(), m);
  // Only a non-finite input or an unconverged bidiagonal QR fail; inputs are checked finite.
  if (info != 0)
    throw Error("low-rank fit: LAPACK dgesdd did not converge on a " + std::to_string(n) + "x" + std::to_string(k) +
                " matrix (info " + std::to_string(info) + ")");
  return out;
}

// Orthonormal basis of the columns of y (thin Householder Q), signs fixed by the algorithm.
ColMat orthonormal(const ColMat& y) {
  Eigen::HouseholderQR<ColMat> qr(y);
  return qr.householderQ() * ColMat::Identity(y.rows(), y.cols());
}

void balance(MatD& l1, MatD& l2) {
  for (Eigen::Index i = 0; i < l1.cols(); ++i) {
    const double a = l1.col(i).norm(), b = l2.row(i).norm();
    if (a == 0 || b == 0) continue;
    const double c = std::sqrt(b / a);
    l1.col(i) *= c;
    l2.row(i) /= c;
  }
}

void note(QuantLog* log, std::string m) {
  if (log) log->messages.push_back(std::move(m));
}

// The weighting actually used: kHessian needs a positive definite damped H, kHessian and
// kDiagonal need some signal in H.
struct Weighting {
  LowRankWeight kind = LowRankWeight::kNone;
  double damp = 0;
  Eigen::LLT<ColMat> llt;  // kHessian: H + λI = L·Lᵀ, S = L
  VecD diag_root;          // kDiagonal: S = diag(√(H_jj + λ))

  template <typename X>
  ColMat s_times(const X& x) const {  // S·x
    if (kind == LowRankWeight::kHessian) return llt.matrixL() * x;
    if (kind == LowRankWeight::kDiagonal) return diag_root.asDiagonal() * x;
    return x;
  }
  template <typename X>
  ColMat st_times(const X& x) const {  // Sᵀ·x
    if (kind == LowRankWeight::kHessian) return llt.matrixU() * x;
    return s_times(x);
  }
  MatD weigh(const MatD& e) const {  // E·S
    if (kind == LowRankWeight::kHessian) return e * llt.matrixL();
    if (kind == LowRankWeight::kDiagonal) return e * diag_root.asDiagonal();
    return e;
  }
  MatD unweigh(const MatD& l) const {  // L·S⁻¹
    if (kind == LowRankWeight::kHessian) return llt.matrixU().solve(l.transpose()).transpose();
    if (kind == LowRankWeight::kDiagonal) return l * diag_root.cwiseInverse().asDiagonal();
    return l;
  }
};

Weighting choose_weighting(const MatD* h, const LowRankOptions& o, QuantLog* log) {
  Weighting w;
  if (o.weight == LowRankWeight::kNone) return w;
  PTQ_ASSERT(h != nullptr, "a weighted low-rank fit needs H");
  const double mean_diag = h->diagonal().mean();
  if (!(mean_diag > 0)) {
    note(log, "low-rank fit: H is zero (no calibration signal), fitted unweighted");
    return w;
  }
  w.damp = o.damp;
  if (o.weight == LowRankWeight::kHessian) {
    for (double damp = o.damp;; damp = damp > 0 ? damp * 10 : 1e-4) {
      ColMat hd = *h;
      hd.diagonal().array() += damp * mean_diag;
      w.llt.compute(hd);
      if (w.llt.info() == Eigen::Success) {
        if (damp != o.damp) note(log, "low-rank fit: H not positive definite, damping raised to " + spec_number(damp));
        w.kind = LowRankWeight::kHessian;
        w.damp = damp;
        return w;
      }
      if (damp >= 1) break;
    }
    note(log, "low-rank fit: H not positive definite even damped by 1, fitted with its diagonal");
    w.damp = o.damp;
  }
  w.kind = LowRankWeight::kDiagonal;
  w.diag_root = (h->diagonal().array() + w.damp * mean_diag).sqrt();
  return w;
}

constexpr int kOversampling = 10;
constexpr int kPowerIterations = 4;

// A = E·S is applied to thin matrices only, never formed: A·x = E·(S·x), Aᵀ·y = Sᵀ·(Eᵀ·y).
Svd randomized_svd(const MatD& e, const Weighting& w, int r, uint64_t seed) {
  const int n = int(e.rows()), k = int(e.cols());
  auto times = [&](const ColMat& x) -> ColMat { return e * w.s_times(x); };
  auto transpose_times = [&](const ColMat& y) -> ColMat { return w.st_times(e.transpose() * y); };
  const int m = std::min({r + kOversampling, n, k});
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  ColMat omega(k, m);
  for (Eigen::Index i = 0; i < omega.size(); ++i) omega.data()[i] = gauss(rng);
  ColMat q = orthonormal(times(omega));
  for (int it = 0; it < kPowerIterations; ++it) q = orthonormal(times(orthonormal(transpose_times(q))));
  const MatD b = transpose_times(q).transpose();  // Qᵀ·A [m, K]
  Svd small = thin_svd(b);
  return {q * small.u, small.s, small.vt};
}

}  // namespace

LowRankFit fit_low_rank(const MatD& e, const MatD* h, const LowRankOptions& o, QuantLog* log) {
  PTQ_ASSERT(o.rank >= 1, "low-rank fit with rank < 1");
  if (!e.allFinite()) throw Error("low-rank fit: the error matrix has non-finite entries");
  const int n = int(e.rows()), k = int(e.cols()), r = std::min({o.rank, n, k});
  if (r < o.rank)
    note(log, "low-rank fit: rank " + std::to_string(o.rank) + " clamped to " + std::to_string(r) + " (layer " +
                  std::to_string(n) + "x" + std::to_string(k) + ")");
  const Weighting w = choose_weighting(h, o, log);
  const bool randomized = o.svd == LowRankSvd::kRandomized || (o.svd == LowRankSvd::kAuto && std::min(n, k) > kExactSvdMaxWidth);
  const Svd svd = randomized ? randomized_svd(e, w, r, o.seed) : thin_svd(w.weigh(e));
  LowRankFit fit;
  fit.singular = svd.s;
  fit.randomized = randomized;
  fit.damp = w.damp;
  const VecD root = svd.s.head(r).cwiseSqrt();
  fit.l1 = svd.u.leftCols(r) * root.asDiagonal();
  fit.l2 = w.unweigh(root.asDiagonal() * svd.vt.topRows(r));  // √Σ_r·V_rᵀ·S⁻¹
  balance(fit.l1, fit.l2);
  // ‖E·S‖²: every singular value squared when they are all known; otherwise formed (the
  // randomized path's one K²·N product, triangular with the full H).
  fit.initial = randomized ? w.weigh(e).squaredNorm() : svd.s.squaredNorm();
  fit.residual = randomized ? std::max(0.0, fit.initial - svd.s.head(r).squaredNorm())
                            : svd.s.tail(svd.s.size() - r).squaredNorm();
  return fit;
}

LowRankBranch fp16_branch(const LowRankFit& fit) {
  LowRankBranch b;
  b.bits = 16;
  b.l1 = fit.l1.cast<float>().unaryExpr([](float v) { return f16_to_f32(f32_to_f16(v)); });
  b.l2 = fit.l2.cast<float>().unaryExpr([](float v) { return f16_to_f32(f32_to_f16(v)); });
  return b;
}

namespace {
const char* weight_flag(LowRankWeight w) {
  switch (w) {
    case LowRankWeight::kHessian: return "hessian";
    case LowRankWeight::kDiagonal: return "diag";
    case LowRankWeight::kNone: return "plain";
  }
  return "";
}
}  // namespace

LowRankOptions low_rank_options(const Spec& spec, LowRankWeight default_weight) {
  LowRankOptions o;
  o.rank = spec.int_value("r", 32);
  o.weight = default_weight;
  int weights = 0;
  for (LowRankWeight w : {LowRankWeight::kHessian, LowRankWeight::kDiagonal, LowRankWeight::kNone})
    if (spec.flag(weight_flag(w))) {
      o.weight = w;
      ++weights;
    }
  o.damp = spec.double_value("damp", kDefaultLowRankDamp);
  const std::string svd = spec.value("svd").value_or("auto");
  const int seed = spec.int_value("seed", 0);
  const std::string quoted = "spec '" + spec.to_string() + "': ";
  if (weights > 1) throw Error(quoted + "hessian, diag and plain exclude each other");
  if (o.rank < 1 || o.rank > 65535 || !(o.damp >= 0 && o.damp < 10) || seed < 0)
    throw Error(quoted + "need 1 <= r <= 65535, 0 <= damp < 10, seed >= 0");
  if (svd == "auto") o.svd = LowRankSvd::kAuto;
  else if (svd == "exact") o.svd = LowRankSvd::kExact;
  else if (svd == "randomized") o.svd = LowRankSvd::kRandomized;
  else throw Error(quoted + "svd must be auto, exact or randomized, got '" + svd + "'");
  o.seed = uint64_t(seed);
  return o;
}

std::string low_rank_spec_args(const LowRankOptions& o, LowRankWeight default_weight) {
  std::string s = "r" + std::to_string(o.rank);
  if (o.weight != default_weight) s += std::string(",") + weight_flag(o.weight);
  if (o.damp != kDefaultLowRankDamp) s += ",damp=" + spec_number(o.damp);
  if (o.svd == LowRankSvd::kExact) s += ",svd=exact";
  if (o.svd == LowRankSvd::kRandomized) s += ",svd=randomized";
  if (o.seed != 0) s += ",seed=" + std::to_string(o.seed);
  return s;
}

double weighted_error(const MatD& e, const MatD& l, const MatD* h) {
  const MatD d = e - l;
  if (!h) return d.squaredNorm();
  return (d * *h).cwiseProduct(d).sum();
}

}  // namespace ptq
