// QuantEase: cyclic coordinate descent on the layer objective (algorithms/quantease.h,
// docs/quantease.md).
//
// Working layout: columns in working order j (act-order permutes them), every [K, N] array
// transposed so that column j of a weight matrix is the contiguous row j:
//   X   [K, N]  the iterate Ŵᵀ                 T  [K, N]  the target (W − S)ᵀ
//   Sn  [K, K]  Sn[j, k] = Σ_jk / Σ_jj, zero diagonal (and zero rows for dead inputs)
//   P   [K, N]  P[j] = (TΣ)[:, j] / Σ_jj = (Sn·T)[j] + T[j]
//   Q   [K, N]  Q[j] = (Sn·X)[j] = Σ_{k≠j} Σ_kj X[k] / Σ_jj, one GEMM per sweep
//   D   [K, N]  D[k] = X_old[k] − X_new[k] for the columns this sweep already updated
// Gauss–Seidel value of column j: u = P[j] − Q[j] + Σ_{k<j} Sn[j, k]·D[k]; the k < j sum runs
// as one GEMM per block of columns plus an in-block triangle. The objective of X is
// f = Σ_j Σ_jj·((Q[j] + X[j] − 2P[j])·X[j] + P[j]·T[j]), free once Q is known.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include "algorithms/quantease.h"

#include <cblas.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <numeric>

#include "algorithms/gptq.h"
#include "algorithms/grid.h"
#include "ptq/blas.h"
#include "ptq/error.h"

namespace ptq {
namespace {

using Clock = std::chrono::steady_clock;

std::string shape_of(const Mat& w) {
  return "[" + std::to_string(w.rows()) + " x " + std::to_string(w.cols()) + "]";
}

std::string fmt(double v, const char* f = "%.6g") {
  char buf[32];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The layer in working order.
struct Work {
  int n = 0, k = 0, groups = 0, gs = 0;  // gs: working columns per group (k when per-channel)
  std::vector<int> perm;                 // working j -> original column
  VecD d;                                // Σ_jj, 0 for dead inputs
  std::vector<uint8_t> dead;
  Mat sn;                                // [K, K]
  Mat scale_t, zero_t;                   // [G, N] the grid, per group contiguous over rows
  int group(int j) const { return j / gs; }
};

// `h` orders the columns (act-order, exactly as GPTQ does, so init=gptq shares its groups);
// `sigma` (h, or h damped) is the Σ the descent minimises over.
Work prepare(const Mat& w, const MatD& h, const MatD& sigma, const QuantEaseOptions& o) {
  Work p;
  p.n = int(w.rows());
  p.k = int(w.cols());
  p.gs = o.grid.group_size <= 0 ? p.k : o.grid.group_size;
  p.groups = o.grid.num_groups(p.k);
  const VecD order_diag = h.diagonal();
  p.perm.resize(p.k);
  std::iota(p.perm.begin(), p.perm.end(), 0);
  if (o.act_order)  // GPTQ's order: dead inputs sort as 1
    std::stable_sort(p.perm.begin(), p.perm.end(), [&](int a, int b) {
      return (order_diag[a] == 0 ? 1.0 : order_diag[a]) > (order_diag[b] == 0 ? 1.0 : order_diag[b]);
    });
  const VecD diag = sigma.diagonal();
  const double mean = std::max(diag.mean(), 0.0);
  p.d.resize(p.k);
  p.dead.assign(p.k, 0);
  for (int j = 0; j < p.k; ++j) {
    const double v = diag[p.perm[j]];
    p.dead[j] = !(v > 1e-12 * mean);  // an input that is (numerically) always zero
    p.d[j] = p.dead[j] ? 0.0 : v;
  }
  p.sn.resize(p.k, p.k);
#pragma omp parallel for schedule(static)
  for (int j = 0; j < p.k; ++j) {
    float* row = &p.sn(j, 0);
    if (p.dead[j]) {
      std::fill(row, row + p.k, 0.0f);
      continue;
    }
    const double* hrow = &sigma(p.perm[j], 0);
    const double inv = 1.0 / p.d[j];
    for (int c = 0; c < p.k; ++c) row[c] = float(hrow[p.perm[c]] * inv);
    row[j] = 0.0f;
  }
  return p;
}

// [K, N] transposed, working order.
Mat to_working(const Mat& w, const Work& p) {
  Mat t(p.k, p.n);
#pragma omp parallel for schedule(static)
  for (int j = 0; j < p.k; ++j)
    for (int r = 0; r < p.n; ++r) t(j, r) = w(r, p.perm[j]);
  return t;
}

Mat from_working(const Mat& t, const Work& p) {
  Mat w(p.n, p.k);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < p.n; ++r)
    for (int j = 0; j < p.k; ++j) w(r, p.perm[j]) = t(j, r);
  return w;
}

// out = Sn·a (+ a when plus_identity), [K, N].
void sn_times(const Work& p, const Mat& a, bool plus_identity, Mat* out) {
  if (plus_identity) *out = a;
  else out->resize(p.k, p.n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p.k, p.n, p.k, 1.0f, p.sn.data(), p.k, a.data(), p.n,
              plus_identity ? 1.0f : 0.0f, out->data(), p.n);
}

// Fits the grid of every (row, group) on the target, with the outlier variant's clipping: the
// round(width·p/2) smallest and that many plus one largest values of each row-group are left
// out (unstructured), or the outlier columns (structured, marked in `excluded`).
void fit_grid(const Mat& target_t, const QuantEaseOptions& o, const std::vector<uint8_t>& excluded, Work& p) {
  p.scale_t.resize(p.groups, p.n);
  p.zero_t.resize(p.groups, p.n);
#pragma omp parallel
  {
    std::vector<float> x;
#pragma omp for schedule(static)
    for (int r = 0; r < p.n; ++r)
      for (int g = 0; g < p.groups; ++g) {
        x.clear();
        const int j0 = g * p.gs, j1 = std::min(p.k, j0 + p.gs);
        for (int j = j0; j < j1; ++j)
          if (excluded.empty() || !excluded[j]) x.push_back(target_t(j, r));
        if (x.empty()) x.push_back(0.0f);
        int skip_lo = 0, skip_hi = 0;
        if (o.outliers > 0 && !o.structured) {
          skip_lo = int(std::lround(double(x.size()) * o.outliers / 2));
          skip_hi = skip_lo + 1;
          if (skip_lo + skip_hi >= int(x.size())) skip_lo = skip_hi = 0;
        }
        if (skip_lo + skip_hi > 0) {
          std::sort(x.begin(), x.end());
          x = std::vector<float>(x.begin() + skip_lo, x.end() - skip_hi);
        }
        const grid::Params prm = grid::find_params(x.data(), int(x.size()), o.grid);
        p.scale_t(g, r) = prm.scale;
        p.zero_t(g, r) = prm.zero;
      }
  }
}

void round_column(const Work& p, int j, int maxq, float* u) {
  const float* s = &p.scale_t(p.group(j), 0);
  const float* z = &p.zero_t(p.group(j), 0);
#pragma omp simd
  for (int r = 0; r < p.n; ++r) u[r] = grid::fake_quantize(u[r], grid::Params{s[r], z[r]}, maxq);
}

// One Gauss–Seidel sweep over every column of X (in place), given P and Q for the state at its
// start. Rows are independent given Σ: each thread takes fixed row slices, so the result does
// not depend on the thread count.
void sweep(const Work& p, const Mat& pt, const Mat& q, bool rounds, int maxq, int block, Mat& x, Mat& d, Mat& u) {
  for (int j0 = 0; j0 < p.k; j0 += block) {
    const int j1 = std::min(p.k, j0 + block), b = j1 - j0;
    // U = P − Q + Sn[j0:j1, :j0]·D[:j0]  (the columns of earlier blocks)
    u.resize(b, p.n);
    for (int i = 0; i < b; ++i) u.row(i) = pt.row(j0 + i) - q.row(j0 + i);
    if (j0 > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, p.n, j0, 1.0f, &p.sn(j0, 0), p.k, d.data(), p.n, 1.0f,
                  u.data(), p.n);
    constexpr int kSlice = 256;
#pragma omp parallel for schedule(static)
    for (int r0 = 0; r0 < p.n; r0 += kSlice) {
      const int r1 = std::min(p.n, r0 + kSlice), len = r1 - r0;
      for (int j = j0; j < j1; ++j) {
        float* uj = &u(j - j0, r0);
        for (int c = j0; c < j; ++c) {
          const float s = p.sn(j, c);
          if (s == 0.0f) continue;
          const float* dc = &d(c, r0);
#pragma omp simd
          for (int i = 0; i < len; ++i) uj[i] += s * dc[i];
        }
        float* xj = &x(j, r0);
        if (p.dead[j]) std::copy(xj, xj + len, uj);  // no curvature: keep the current value
        if (rounds) {
          const float* s = &p.scale_t(p.group(j), r0);
          const float* z = &p.zero_t(p.group(j), r0);
#pragma omp simd
          for (int i = 0; i < len; ++i) uj[i] = grid::fake_quantize(uj[i], grid::Params{s[i], z[i]}, maxq);
        }
        float* dj = &d(j, r0);
#pragma omp simd
        for (int i = 0; i < len; ++i) {
          dj[i] = xj[i] - uj[i];
          xj[i] = uj[i];
        }
      }
    }
  }
}

// f for the state X, with Q = Sn·X, P for the target T.
double objective(const Work& p, const Mat& x, const Mat& q, const Mat& pt, const Mat& target_t) {
  double f = 0;
#pragma omp parallel for schedule(static) reduction(+ : f)
  for (int j = 0; j < p.k; ++j) {
    if (p.dead[j]) continue;
    double row = 0;
    for (int r = 0; r < p.n; ++r)
      row += (double(q(j, r)) + x(j, r) - 2.0 * pt(j, r)) * x(j, r) + double(pt(j, r)) * target_t(j, r);
    f += p.d[j] * row;
  }
  return f;
}

double lambda_max(const MatD& h) {
  const int k = int(h.rows());
  VecD v = VecD::Ones(k) / std::sqrt(double(k));
  double lambda = 0;
  for (int it = 0; it < 100; ++it) {
    VecD next = h * v;
    const double norm = next.norm();
    if (!(norm > 0)) return 0;
    lambda = norm;
    v = next / norm;
  }
  return lambda;
}

// The outlier set S (working order, [K, N]): keeps the `keep` largest |entries|, or the `keep`
// columns of largest norm (structured), and zeroes the rest.
void hard_threshold(Mat& s, int64_t keep, bool structured) {
  if (structured) {
    std::vector<std::pair<double, int>> norms(size_t(s.rows()));
    for (Eigen::Index j = 0; j < s.rows(); ++j) norms[size_t(j)] = {-s.row(j).cast<double>().squaredNorm(), int(j)};
    std::stable_sort(norms.begin(), norms.end());
    for (size_t i = size_t(std::min<int64_t>(keep, s.rows())); i < norms.size(); ++i) s.row(norms[i].second).setZero();
    return;
  }
  if (keep >= s.size()) return;
  std::vector<float> mags(s.data(), s.data() + s.size());
  for (auto& m : mags) m = std::fabs(m);
  auto nth = mags.begin() + (mags.size() - size_t(keep));
  std::nth_element(mags.begin(), nth, mags.end());
  const float threshold = *nth;
  // Ties at the threshold: keep the first ones in memory order, exactly `keep` in all.
  int64_t above = 0;
  for (Eigen::Index i = 0; i < s.size(); ++i) above += std::fabs(s.data()[i]) > threshold;
  int64_t ties = keep - above;
  for (Eigen::Index i = 0; i < s.size(); ++i) {
    const float m = std::fabs(s.data()[i]);
    if (m > threshold) continue;
    if (m == threshold && ties > 0 && m > 0) {
      --ties;
      continue;
    }
    s.data()[i] = 0.0f;
  }
}

std::vector<uint8_t> nonzero_rows(const Mat& s) {
  std::vector<uint8_t> out(size_t(s.rows()), 0);
  for (Eigen::Index j = 0; j < s.rows(); ++j) out[size_t(j)] = s.row(j).cwiseAbs().maxCoeff() > 0;
  return out;
}

GridCodes codes_of(const Mat& x, const Work& p, const QuantEaseOptions& o) {
  GridCodes g;
  g.rows = p.n;
  g.cols = p.k;
  g.grid = o.grid;
  g.scales.resize(p.n, p.groups);
  g.zeros.resize(p.n, p.groups);
  for (int gi = 0; gi < p.groups; ++gi)
    for (int r = 0; r < p.n; ++r) {
      g.scales(r, gi) = p.scale_t(gi, r);
      g.zeros(r, gi) = p.zero_t(gi, r);
    }
  g.g_idx.resize(p.k);
  for (int j = 0; j < p.k; ++j) g.g_idx[p.perm[j]] = p.group(j);
  g.q.resize(size_t(p.n) * p.k);
  const int maxq = o.grid.max_q();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < p.n; ++r)
    for (int j = 0; j < p.k; ++j) {
      const grid::Params prm{p.scale_t(p.group(j), r), p.zero_t(p.group(j), r)};
      g.q[size_t(r) * p.k + p.perm[j]] = uint8_t(grid::quantize_code(x(j, r), prm, maxq));
    }
  return g;
}

bool on_grid(const Mat& x, const Work& p, int maxq) {
  for (int j = 0; j < p.k; ++j)
    for (int r = 0; r < p.n; ++r) {
      const grid::Params prm{p.scale_t(p.group(j), r), p.zero_t(p.group(j), r)};
      if (grid::fake_quantize(x(j, r), prm, maxq) != x(j, r)) return false;
    }
  return true;
}

}  // namespace

bool quantease_sweep_rounds(const QuantEaseOptions& o, int it) {
  if (!o.relax) return true;
  return !(it % 3 == 1 && it <= 25 && it != o.iters - 1);
}

double quantease_objective(const Mat& w, const Mat& w_hat, const MatD& h) {
  const MatD e = (w - w_hat).cast<double>();
  return ((e * h).cwiseProduct(e)).sum();
}

QuantizedLayer quantease_quantize(const Mat& w, const MatD& h, const QuantEaseOptions& o, QuantLog* log) {
  const auto t0 = Clock::now();
  if (h.rows() != w.cols() || h.cols() != w.cols())
    throw Error("quantease: layer " + shape_of(w) + " got statistics for " + std::to_string(h.rows()) + " features");
  if (!w.allFinite()) throw Error("quantease: layer " + shape_of(w) + " has non-finite weights");
  if (!h.allFinite()) throw Error("quantease: layer " + shape_of(w) + " has non-finite input statistics");
  FlushDenormals ftz;
  MatD damped;
  if (o.damp > 0) {
    damped = h;
    damped.diagonal().array() += o.damp * std::max(h.diagonal().mean(), 0.0);
  }
  const MatD& sigma = o.damp > 0 ? damped : h;
  Work p = prepare(w, h, sigma, o);
  const int maxq = o.grid.max_q();
  const Mat wt = to_working(w, p);

  // Outliers: the initial S holds the largest weights (or columns); the dense part starts
  // without them.
  const bool with_outliers = o.outliers > 0;
  const int64_t keep = with_outliers ? (o.structured ? std::lround(double(p.k) * o.outliers)
                                                     : std::llround(double(p.n) * p.k * o.outliers))
                                     : 0;
  Mat st = Mat::Zero(with_outliers ? p.k : 0, with_outliers ? p.n : 0);
  if (with_outliers) {
    st = wt;
    hard_threshold(st, keep, o.structured);
  }
  Mat target = with_outliers ? Mat(wt - st) : wt;
  fit_grid(target, o, o.structured && with_outliers ? nonzero_rows(st) : std::vector<uint8_t>{}, p);

  Mat x;  // the iterate
  if (o.init == QuantEaseInit::kGptq) {
    GptqOptions go;
    go.grid = o.grid;
    go.act_order = o.act_order;
    go.damp = std::max(o.damp, 0.01);
    const GridCodes gq = gptq_quantize(with_outliers ? from_working(target, p) : w, h, go, nullptr);
    // GPTQ's own grid (same permutation and groups), so the start is GPTQ's solution exactly.
    for (int r = 0; r < p.n; ++r)
      for (int j = 0; j < p.k; ++j) {
        PTQ_ASSERT(gq.g_idx[p.perm[j]] == p.group(j), "quantease and gptq share the act-order groups");
        p.scale_t(p.group(j), r) = gq.scales(r, p.group(j));
        p.zero_t(p.group(j), r) = gq.zeros(r, p.group(j));
      }
    x = to_working(gq.dequantize(), p);
  } else {
    x = target;
    if (o.init == QuantEaseInit::kRtn)
      for (int j = 0; j < p.k; ++j) round_column(p, j, maxq, &x(j, 0));
  }

  const double lambda = with_outliers ? lambda_max(sigma) : 0;
  Mat pw, ps, pt, q, d = Mat::Zero(p.k, p.n), u;
  sn_times(p, wt, true, &pw);
  if (with_outliers) sn_times(p, st, true, &ps);
  pt = with_outliers ? Mat(pw - ps) : pw;

  double best = std::numeric_limits<double>::infinity();
  int best_sweep = -2;
  Mat best_x, best_s;
  bool state_rounded = o.init != QuantEaseInit::kNone || on_grid(x, p, maxq);
  std::string trace;
  double norm = 0;  // tr(WΣWᵀ), for relative objectives in the log
  for (int j = 0; j < p.k; ++j) norm += p.d[j] * double(pw.row(j).cast<double>().dot(wt.row(j).cast<double>()));
  for (int it = 0; it <= o.iters; ++it) {
    sn_times(p, x, false, &q);  // Q for the state after sweep it − 1
    if (with_outliers && it > 0) {
      // IHT: S ← H_k(S − α/(2λ)·(Ŵ + S − W)Σ); column j of (·)Σ is Σ_jj·(Q + X + PS − PW)[j].
      const float step = lambda > 0 ? float(o.alpha / (2.0 * lambda)) : 0.0f;
#pragma omp parallel for schedule(static)
      for (int j = 0; j < p.k; ++j) {
        const float dj = float(p.d[j]);
        for (int r = 0; r < p.n; ++r) st(j, r) -= step * dj * (q(j, r) + x(j, r) + ps(j, r) - pw(j, r));
      }
      hard_threshold(st, keep, o.structured);
      sn_times(p, st, true, &ps);
      pt = pw - ps;
      target = wt - st;
    }
    const double f = objective(p, x, q, pt, target);
    if (it > 0) {
      trace += (trace.empty() ? "" : " ") + fmt(norm > 0 ? f / norm : f, "%.4g") + (state_rounded ? "" : "*");
      if (o.on_sweep) o.on_sweep(it - 1, from_working(x, p), state_rounded, f);
    }
    if (state_rounded && f < best) {
      best = f;
      best_sweep = it - 1;
      best_x = x;
      if (with_outliers) best_s = st;
    }
    if (it == o.iters) break;
    const bool rounds = quantease_sweep_rounds(o, it);
    sweep(p, pt, q, rounds, maxq, std::max(1, o.block), x, d, u);
    state_rounded = rounds;
  }
  if (best_sweep == -2) {  // no rounded state (iters 0 from an unrounded start): round the last
    for (int j = 0; j < p.k; ++j) round_column(p, j, maxq, &x(j, 0));
    best_x = x;
    if (with_outliers) best_s = st;
  }

  QuantizedLayer out = QuantizedLayer::from_grid(codes_of(best_x, p, o));
  if (with_outliers) out.sparse = SparseResidual::from_dense(from_working(best_s, p));
  if (log) {
    log->messages.push_back("quantease: relative objective per sweep (* = relaxed) " + trace + "; kept " +
                            (best_sweep < 0 ? std::string("the initial state") : "sweep " + std::to_string(best_sweep)));
    if (with_outliers)
      log->messages.push_back("quantease: " + std::to_string(out.sparse->nnz()) + " outliers (" +
                              fmt(100.0 * double(out.sparse->nnz()) / (double(p.n) * p.k), "%.3g") + "% of weights)");
    log->seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return out;
}

namespace {

constexpr double kDefaultDamp = 0.01;

class QuantEase final : public WeightQuantizer {
 public:
  QuantEase(const Spec& spec, const GridConstraints& c) {
    o_.grid = grid::grid_from_spec(spec);
    c.apply(o_.grid);
    if (o_.grid.additive)
      throw Error("spec '" + spec.to_string() + "': quantease fits zero-point grids only, and the output format "
                  "asks for additive (scale·code + offset) groups; use gptq or rtn, or a symmetric format");
    if (o_.grid.super_groups > 0)
      throw Error("spec '" + spec.to_string() + "': quantease fits each group on its own, and the output format "
                  "codes the groups' scales per super-block (a GGUF K-quant); use gptq or rtn");
    o_.act_order = spec.flag("act_order");
    o_.iters = spec.int_value("iters", 30);
    const std::string init = spec.value("init").value_or("none");
    if (init == "none") o_.init = QuantEaseInit::kNone;
    else if (init == "rtn") o_.init = QuantEaseInit::kRtn;
    else if (init == "gptq") o_.init = QuantEaseInit::kGptq;
    else throw Error("spec '" + spec.to_string() + "': init must be none, rtn or gptq, got '" + init + "'");
    o_.relax = !spec.flag("no_relax");
    o_.outliers = spec.double_value("outliers", 0.0);
    o_.structured = spec.flag("structured");
    o_.alpha = spec.double_value("alpha", 1.0);
    o_.block = spec.int_value("block", 128);
    o_.damp = spec.double_value("damp", kDefaultDamp);
    spec.check_all_used();
    if (o_.iters < 0 || o_.iters > 1000 || o_.block < 1 || !(o_.outliers >= 0 && o_.outliers < 0.5) ||
        !(o_.alpha > 0 && o_.alpha < 100) || !(o_.damp >= 0 && o_.damp < 10))
      throw Error("spec '" + spec.to_string() +
                  "': need 0 <= iters <= 1000, block >= 1, 0 <= outliers < 0.5, 0 < alpha < 100, 0 <= damp < 10");
    if (o_.structured && o_.outliers == 0)
      throw Error("spec '" + spec.to_string() + "': structured needs outliers=FRACTION");
  }
  std::string spec() const override {
    std::string s = "quantease(" + grid::grid_spec_args(o_.grid);
    if (o_.act_order) s += ",act_order";
    if (o_.iters != 30) s += ",iters=" + std::to_string(o_.iters);
    if (o_.init == QuantEaseInit::kRtn) s += ",init=rtn";
    if (o_.init == QuantEaseInit::kGptq) s += ",init=gptq";
    if (!o_.relax) s += ",no_relax";
    if (o_.outliers > 0) s += ",outliers=" + spec_number(o_.outliers);
    if (o_.structured) s += ",structured";
    if (o_.alpha != 1.0) s += ",alpha=" + spec_number(o_.alpha);
    if (o_.block != 128) s += ",block=" + std::to_string(o_.block);
    if (o_.damp != kDefaultDamp) s += ",damp=" + spec_number(o_.damp);
    return s + ")";
  }
  const QuantGrid& grid() const override { return o_.grid; }
  bool needs_stats() const override { return true; }
  QuantizedLayer quantize(const Mat& w, const InputStats* stats, QuantLog* log) const override {
    if (!stats || stats->tokens() == 0)
      throw Error("quantease: layer " + shape_of(w) + " needs calibration inputs, got none");
    return quantease_quantize(w, stats->hessian(), o_, log);
  }

 private:
  QuantEaseOptions o_;
};

const QuantizerRegistrar kRegister("quantease", [](const Spec& s, const GridConstraints& c)
                                                    -> std::unique_ptr<WeightQuantizer> {
  return std::make_unique<QuantEase>(s, c);
});

}  // namespace
}  // namespace ptq
