// GPTQ, step for step the reference `fasterquant` (IST-DASLab/gptq, gptq.py), with the update
// factor and the update written in an equivalent form that needs one Cholesky and no inverse
// (docs/algorithms.md, "GPTQ", derives it and lists where the arithmetic differs).
// This file: setup, the update factor, the result. The column loop: gptq_loop.cpp.
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 GEMM kernels and a false
// -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include "algorithms/gptq.h"

#include <lapacke.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <exception>
#include <mutex>
#include <numeric>

#include "algorithms/cholesky.h"
#include "algorithms/gptq_internal.h"
#include "algorithms/grid.h"
#include "ptq/blas.h"
#include "ptq/error.h"

namespace ptq {
namespace {

using gptq_detail::Problem;
using gptq_detail::UpdateFactor;
using gptq_detail::shape_of;

// GAR's working order: whole fitting units (groups, or a super-block grid's super-blocks, which
// are fitted together) by their largest diag H, descending, and inside each unit its columns by
// diag H, descending; both sorts stable, so ties keep the original order. A last partial unit (K
// not a multiple of g) stays last, so that every working run of g columns is one original unit
// and the dynamic fit at each run's start fits exactly that unit.
std::vector<int> group_aware_order(const VecD& diag, int g) {
  const int k = static_cast<int>(diag.size()), full = k / g;
  std::vector<int> groups(full), perm;
  std::iota(groups.begin(), groups.end(), 0);
  std::vector<double> top(full);
  for (int gi = 0; gi < full; ++gi) top[gi] = diag.segment(gi * g, g).maxCoeff();
  std::stable_sort(groups.begin(), groups.end(), [&](int a, int b) { return top[a] > top[b]; });
  groups.push_back(full);  // the partial group, empty when g divides K
  perm.reserve(k);
  for (int gi : groups) {
    const size_t begin = perm.size();
    for (int c = gi * g; c < std::min(k, (gi + 1) * g); ++c) perm.push_back(c);
    std::stable_sort(perm.begin() + begin, perm.end(), [&](int a, int b) { return diag[a] > diag[b]; });
  }
  return perm;
}

// group_aware orders the columns inside each group, so it needs groups and excludes the two
// options that order columns their own way. Checked at parse time and again for direct calls.
bool group_aware_misused(const GptqOptions& o) {
  return o.group_aware && (o.grid.group_size <= 0 || o.act_order || o.static_groups);
}

// Act-order fits groups in working order (a permuted g_idx); a super-block's groups must be
// consecutive original columns, so the two exclude each other (group_aware keeps them whole).
bool act_order_on_super_blocks(const GptqOptions& o) { return o.grid.super_groups > 0 && o.act_order; }
constexpr const char* kActOrderOnSuperBlocks =
    "super-block grids (GGUF K-quants) fit runs of consecutive original groups together, so they do not take "
    "act_order (group_aware keeps super-blocks whole)";

}  // namespace

namespace gptq_detail {

std::string shape_of(const Mat& w) {
  return "[" + std::to_string(w.rows()) + " x " + std::to_string(w.cols()) + "]";
}

// Dead columns, fixed parameters and the act-order permutation, in the reference's order.
Problem prepare(const Mat& w, const MatD& h, const GptqOptions& o) {
  const int n = static_cast<int>(w.rows()), k = static_cast<int>(w.cols());
  const QuantGrid& g = o.grid;
  Problem p;
  p.w = &w;
  p.grouped = g.group_size > 0;
  p.static_params = !p.grouped || o.static_groups;
  p.scales.resize(n, g.num_groups(k));
  p.zeros.resize(n, g.num_groups(k));
  if (g.super_groups > 0) p.super_codes.emplace(n, k, g);
  VecD diag = h.diagonal();
  p.dead.assign(k, 0);
  for (int i = 0; i < k; ++i)
    if (diag[i] == 0.0) {
      diag[i] = 1.0;  // an input that is always zero: its weight can be anything, pick 0
      p.dead[i] = 1;
    }
  // The reference fits per-channel parameters before zeroing dead columns, static groups after.
  if (!p.grouped) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; ++r) grid::fit_row(&w(r, 0), k, g, r, p.scales, p.zeros, p.super_codes ? &*p.super_codes : nullptr);
  } else if (o.static_groups) {
#pragma omp parallel
    {
      std::vector<float> row(k);
#pragma omp for schedule(static)
      for (int r = 0; r < n; ++r) {
        for (int c = 0; c < k; ++c) row[c] = p.dead[c] ? 0.0f : w(r, c);
        grid::fit_row(row.data(), k, g, r, p.scales, p.zeros, p.super_codes ? &*p.super_codes : nullptr);
      }
    }
  }
  p.original_groups = p.grouped && (o.static_groups || o.group_aware);
  p.perm.resize(k);
  std::iota(p.perm.begin(), p.perm.end(), 0);
  if (o.act_order)  // stable, so equal activations keep their column order: reproducible
    std::stable_sort(p.perm.begin(), p.perm.end(), [&](int a, int b) { return diag[a] > diag[b]; });
  else if (o.group_aware)
    p.perm = group_aware_order(diag, g.super_width());
  p.h_diag.resize(k);
  for (int j = 0; j < k; ++j) p.h_diag[j] = diag[p.perm[j]];
  // Reserved first, so that the huge-page advice comes before the zeroing touches the pages.
  p.codes.reserve(static_cast<size_t>(n) * k);
  advise_huge_pages(p.codes.data(), p.codes.capacity());
  p.codes.resize(static_cast<size_t>(n) * k);
  return p;
}

}  // namespace gptq_detail

namespace {

// ---- The update factor ----------------------------------------------------------------------
// H + λI = R·Rᵀ with R upper triangular is one Cholesky of the reversed matrix: with J the
// reversal permutation, J(H + λI)J = L·Lᵀ (L lower) gives R = J·L·J, i.e. R_ij = L_{K-1-i,K-1-j}.
// It runs in fp32 like the reference's factorisation (diagonal blocks in fp64), on one K×K
// buffer, tiled so that the result is the same at any thread count (algorithms/cholesky.h).

// The lower triangle of J·P(H + λI)Pᵀ·J in fp32: reversed, act-order permuted, dead diagonal
// set to 1, strict upper triangle zero. It reads one triangle of H (each off-diagonal pair
// once) and returns false when a value it read is not finite: checking there costs nothing,
// a separate pass over the fp64 H took 4–6 ms at K = 4096.
bool reversed_damped_hessian(const MatD& h, const Problem& p, double lambda, MatMap* out) {
  const int k = static_cast<int>(h.rows());
  const bool identity = std::is_sorted(p.perm.begin(), p.perm.end());
  std::vector<int> reversed_perm(k);  // column j of the result reads H column reversed_perm[j]
  for (int j = 0; j < k; ++j) reversed_perm[j] = p.perm[k - 1 - j];
  double finite_check = 0.0;  // x·0 is 0 for finite x, NaN otherwise
#pragma omp parallel for schedule(static) reduction(+ : finite_check)
  for (int i = 0; i < k; ++i) {
    const double* hrow = &h(p.perm[k - 1 - i], 0);
    float* arow = &(*out)(i, 0);
    double row_check = 0.0;
    if (identity) {  // a plain reversed copy, which vectorises
      const double* src = hrow + (k - 1);
#pragma omp simd reduction(+ : row_check)
      for (int j = 0; j < i; ++j) {
        arow[j] = static_cast<float>(src[-j]);
        row_check += src[-j] * 0.0;
      }
    } else {  // a gather within one row of H, which stays in L1
#pragma omp simd reduction(+ : row_check)
      for (int j = 0; j < i; ++j) {
        const double v = hrow[reversed_perm[j]];
        arow[j] = static_cast<float>(v);
        row_check += v * 0.0;
      }
    }
    arow[i] = static_cast<float>(p.h_diag[k - 1 - i] + lambda);
    std::fill(arow + i + 1, arow + k, 0.0f);
    finite_check += row_check;
  }
  return finite_check == 0.0;
}

// Row `out` of R̂ from a row of L whose nonzeros are [0, len): the half turn R_ij = L_{k-1-i,k-1-j}
// reverses it, and R̂_ij = R_ij / R_jj. Returns a finiteness check (0 when all finite).
float turned_row(const float* l_row, int len, const float* diag_r, int k, float* out) {
  const int first = k - len;
  std::fill(out, out + first, 0.0f);
  float check = 0.0f;
#pragma omp simd reduction(+ : check)
  for (int j = first; j < k; ++j) {
    out[j] = l_row[k - 1 - j] / diag_r[j];
    check += out[j] * 0.0f;
  }
  return check;
}

// R̂ in place of the reversed matrix. False on a failed Cholesky or a non-finite factor (a
// status, not an error: the caller raises λ).
bool rhat_from_reversed(MatMap* a, Vec* r_diag = nullptr) {
  const int k = static_cast<int>(a->rows());
  if (!cholesky_lower(a->data(), k, k, StrictUpper::kScratch)) return false;
  // Row i of R is row k-1-i of L reversed: rows i and k-1-i trade places, so each pair is turned
  // together, row i's L saved first. Only L's lower triangle is read; every element is written.
  Vec local;
  Vec& diag_r = r_diag ? *r_diag : local;
  diag_r.resize(k);
  for (int j = 0; j < k; ++j) diag_r[j] = (*a)(k - 1 - j, k - 1 - j);
  float finite_check = 0.0f;
#pragma omp parallel reduction(+ : finite_check)
  {
    std::vector<float> saved;
#pragma omp for schedule(static)
    for (int i = 0; i < (k + 1) / 2; ++i) {
      const int b = k - 1 - i;
      float* top = &(*a)(i, 0);
      float* bottom = &(*a)(b, 0);
      saved.assign(top, top + i + 1);  // L row i
      if (b != i) finite_check += turned_row(bottom, b + 1, diag_r.data(), k, top);
      finite_check += turned_row(saved.data(), i + 1, diag_r.data(), k, bottom);
    }
  }
  return finite_check == 0.0f;
}

// group_fit (see UpdateFactor): unit upper triangular inverses in fp64, blocks in parallel.
std::vector<Mat> group_fit_inverses(const MatMap& rhat, const Problem& p, const GptqOptions& o) {
  // A super-block's groups are fitted together, at the start of the first.
  const int k = static_cast<int>(rhat.rows()), g = o.grid.super_width(), blocks = (k + o.block - 1) / o.block;
  std::vector<Mat> fit(blocks);
  if (!p.grouped || p.static_params) return fit;
  BlasSingleThreaded single;
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < blocks; ++b) {
    const int i1 = b * o.block, i2 = std::min(k, i1 + o.block);
    const int last_start = (i2 - 1) / g * g;
    if (last_start < i1) continue;  // no group starts in this block
    const int m = std::min(k, last_start + g) - i1;
    std::vector<double> v(static_cast<size_t>(m) * m, 0.0);
    for (int i = 0; i < m; ++i)
      for (int j = i; j < m; ++j) v[static_cast<size_t>(i) * m + j] = rhat(i1 + i, i1 + j);
    // Row-major upper is column-major lower on the same buffer; unit diagonal.
    LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'L', 'U', m, v.data(), m);
    fit[b] = Eigen::Map<MatD>(v.data(), m, m).cast<float>();
  }
  return fit;
}

}  // namespace

namespace gptq_detail {

UpdateFactor damped_update_factor(const MatD& h, const Problem& p, const GptqOptions& o, const std::string& shape,
                                  QuantLog* log, GptqWorkspace& ws) {
  const double mean_diag = p.h_diag.mean();
  const int k = static_cast<int>(h.rows());
  double damp = o.damp;
  UpdateFactor f{MatMap(ws.factor(k), k, k), {}, {}};
  for (int attempt = 0;; ++attempt) {
    if (!reversed_damped_hessian(h, p, damp * mean_diag, &f.rhat))
      throw Error("gptq: layer " + shape + " has non-finite input statistics (Hessian)");
    if (rhat_from_reversed(&f.rhat, &f.r_diag)) break;
    if (attempt == o.max_retries)
      throw Error("gptq: Cholesky of the Hessian failed for layer " + shape + " even with damp=" +
                  spec_number(damp) + " after " + std::to_string(o.max_retries) + " retries");
    const double next = damp > 0 ? damp * 10 : 0.01;
    if (log)
      log->messages.push_back("gptq " + shape + ": Cholesky failed at damp=" + spec_number(damp) +
                              ", damping raised to " + spec_number(next));
    damp = next;
  }
  f.group_fit = group_fit_inverses(f.rhat, p, o);
  return f;
}

GridCodes assemble(Problem& p, const GptqOptions& o) {
  const int k = static_cast<int>(p.w->cols());
  GridCodes out;
  out.rows = static_cast<int>(p.w->rows());
  out.cols = k;
  out.grid = o.grid;
  out.rule = grid::rule_of(o.grid);
  out.scales = std::move(p.scales);
  out.zeros = std::move(p.zeros);
  out.q = std::move(p.codes);
  out.g_idx.resize(k);
  // Static and group-aware groups keep the original column's group; act-order ones are numbered
  // in the order they were fitted (permuted order), so g_idx[perm[j]] = j / g.
  for (int j = 0; j < k; ++j) out.g_idx[p.perm[j]] = group_of(p, o, j);
  if (p.super_codes) p.super_codes->attach(out);
  return out;
}

void validate_inputs(const Mat& w, const MatD& h, const GptqOptions& o, const std::string& who) {
  const std::string shape = shape_of(w);
  grid::validate(o.grid, who);
  if (h.rows() != w.cols() || h.cols() != w.cols())
    throw Error(who + ": layer " + shape + " got a Hessian of " + std::to_string(h.rows()) + " x " +
                std::to_string(h.cols()));
  // H's off-diagonal entries are checked as they are read (reversed_damped_hessian).
  if (!all_finite(w.data(), static_cast<size_t>(w.size())) || !h.diagonal().allFinite())
    throw Error(who + ": layer " + shape + " has non-finite weights or input statistics");
  if (o.block < 1 || o.damp < 0) throw Error(who + ": block must be >= 1 and damp >= 0");
  if (act_order_on_super_blocks(o)) throw Error(who + ": " + kActOrderOnSuperBlocks);
  if (group_aware_misused(o))
    throw Error(who + ": group_aware orders the columns of each group, so it needs groups (g<N>) and "
                      "takes neither act_order nor static_groups, which order columns their own way");
}

int group_of(const Problem& p, const GptqOptions& o, int j) {
  if (!p.grouped) return 0;
  return p.original_groups ? p.perm[j] / o.grid.group_size : j / o.grid.group_size;
}

}  // namespace gptq_detail

bool gptq_update_factor(const MatD& h, Mat* rhat) {
  Problem natural_order;  // no permutation, no damping, H's own diagonal
  natural_order.perm.resize(h.rows());
  std::iota(natural_order.perm.begin(), natural_order.perm.end(), 0);
  natural_order.h_diag = h.diagonal();
  rhat->resize(h.rows(), h.cols());
  MatMap reversed(rhat->data(), h.rows(), h.cols());
  return reversed_damped_hessian(h, natural_order, 0.0, &reversed) && rhat_from_reversed(&reversed);
}

float* GptqWorkspace::factor(int k) {
  const size_t need = static_cast<size_t>(k) * k;
  if (need > capacity_) {
    factor_.reset();  // the old buffer goes before the new one comes: never both at once
    factor_.reset(new float[need]);  // uninitialised: the gather writes every element
    capacity_ = need;
    advise_huge_pages(factor_.get(), need * sizeof(float));
  }
  return factor_.get();
}

GridCodes gptq_quantize(const Mat& w, const MatD& h, const GptqOptions& o, QuantLog* log,
                              GptqWorkspace* workspace) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string shape = shape_of(w);
  gptq_detail::validate_inputs(w, h, o, "gptq");
  FlushDenormals ftz;
  Problem p = gptq_detail::prepare(w, h, o);
  GptqWorkspace own;
  const UpdateFactor f = gptq_detail::damped_update_factor(h, p, o, shape, log, workspace ? *workspace : own);
  gptq_detail::run_update_loop(p, f, o);
  GridCodes out = gptq_detail::assemble(p, o);
  if (log) log->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

namespace {

class Gptq final : public WeightQuantizer {
 public:
  Gptq(const Spec& spec, const GridConstraints& c) {
    opt_.grid = grid::grid_from_spec(spec);
    c.apply(opt_.grid);
    opt_.act_order = spec.flag("act_order");
    opt_.static_groups = spec.flag("static_groups");
    opt_.group_aware = spec.flag("group_aware");
    opt_.damp = spec.double_value("damp", 0.01);
    opt_.block = spec.int_value("block", 128);
    spec.check_all_used();
    if (opt_.damp < 0 || opt_.block < 1)
      throw Error("spec '" + spec.to_string() + "': damp must be >= 0 and block >= 1");
    if (group_aware_misused(opt_))
      throw Error("spec '" + spec.to_string() + "': group_aware needs groups (g<N>) and takes neither "
                  "act_order nor static_groups");
    if (act_order_on_super_blocks(opt_)) throw Error("spec '" + spec.to_string() + "': " + kActOrderOnSuperBlocks);
  }
  std::string spec() const override {
    std::string s = "gptq(" + grid::grid_spec_args(opt_.grid);
    if (opt_.act_order) s += ",act_order";
    if (opt_.static_groups) s += ",static_groups";
    if (opt_.group_aware) s += ",group_aware";
    if (opt_.damp != 0.01) s += ",damp=" + spec_number(opt_.damp);
    if (opt_.block != 128) s += ",block=" + std::to_string(opt_.block);
    return s + ")";
  }
  const QuantGrid& grid() const override { return opt_.grid; }
  bool needs_stats() const override { return true; }
  QuantizedLayer quantize(const Mat& w, const InputStats* stats, QuantLog* log) const override {
    if (!stats || stats->tokens() == 0)
      throw Error("gptq: layer " + shape_of(w) + " needs calibration inputs, got none");
    if (stats->k() != w.cols())
      throw Error("gptq: layer " + shape_of(w) + " got input statistics for " +
                  std::to_string(stats->k()) + " features");
    // The workspace serves one call at a time; a concurrent call allocates its own.
    std::unique_lock<std::mutex> lock(workspace_mutex_, std::try_to_lock);
    return QuantizedLayer::from_grid(
        gptq_quantize(w, stats->hessian(), opt_, log, lock.owns_lock() ? &workspace_ : nullptr));
  }

 private:
  GptqOptions opt_;
  mutable std::mutex workspace_mutex_;
  mutable GptqWorkspace workspace_;  // reused from layer to layer
};

const QuantizerRegistrar kRegister("gptq", [](const Spec& s, const GridConstraints& c) -> std::unique_ptr<WeightQuantizer> {
  return std::make_unique<Gptq>(s, c);
});

}  // namespace
}  // namespace ptq
