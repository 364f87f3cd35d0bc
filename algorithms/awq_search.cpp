// AWQ scale and clip searches on the output-error objective (awq_search.h).
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "algorithms/awq_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "algorithms/grid.h"
#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq::awq {
namespace {

// Rows per task: every task's result depends only on its rows, whatever thread runs it.
constexpr int kChunkRows = 64;

using ColumnSpan = Eigen::Ref<const Mat, 0, Eigen::OuterStride<>>;

int chunk_count(Eigen::Index rows) { return int((rows + kChunkRows - 1) / kChunkRows); }

// err[r] += Σ_b d_rb H_bb d_rbᵀ over the objective blocks inside columns [c0, c0 + d.cols());
// c0 is a block boundary. The products run in fp32 (GEMM), the sums in fp64.
void add_block_errors(const ColumnSpan& d, int c0, const ObjectiveBlocks& blocks, double* err) {
  Mat e;
  for (int b0 = 0; b0 < d.cols(); b0 += blocks.width) {
    const Mat& h = blocks.h[size_t((c0 + b0) / blocks.width)];
    const int n = int(h.rows());
    PTQ_ASSERT(b0 + n <= d.cols());
    e.noalias() = d.middleCols(b0, n) * h;
    for (Eigen::Index r = 0; r < d.rows(); ++r) {
      double s = 0;
      for (int j = 0; j < n; ++j) s += double(e(r, j)) * double(d(r, b0 + j));
      err[r] += s;
    }
  }
}

double chunk_error(const Mat& w, const Mat& w_hat, const ObjectiveBlocks& blocks) {
  std::vector<double> err(static_cast<size_t>(w.rows()), 0.0);
  const Mat d = w - w_hat;
  add_block_errors(d, 0, blocks, err.data());
  double total = 0;
  for (double e : err) total += e;
  return total;
}

// grid::find_params, faster: without `mse` the parameters depend only on the group's min and
// max, so they are found with Eigen's vectorised reductions and handed to find_params as a
// two-element group, which yields exactly the same scale and zero.
grid::Params group_params(const float* x, int n, const QuantGrid& g) {
  if (g.mse) return grid::find_params(x, n, g);
  const Eigen::Map<const Eigen::VectorXf> v(x, n);
  const float range[2] = {v.minCoeff(), v.maxCoeff()};
  return grid::find_params(range, 2, g);
}

// Scale search on rows [r0, r0 + rows) of one layer: err[i] += objective at candidate i. One
// quantization group at a time, every candidate in turn, so the [rows, group] tile, its δ and
// H_gg stay in cache.
void scale_chunk(const Mat& w, int r0, int rows, const std::vector<Vec>& candidates, const QuantGrid& g,
                 const ObjectiveBlocks& blocks, double* err) {
  const int k = int(w.cols()), maxq = g.max_q();
  std::vector<double> row_err(static_cast<size_t>(rows));
  std::vector<float> scaled;
  Mat d;
  for (int gi = 0; gi < g.num_groups(k); ++gi) {
    const int c0 = grid::group_begin(g, gi), n = grid::group_width(g, k, gi);
    const auto wg = w.block(r0, c0, rows, n);
    d.resize(rows, n);
    scaled.resize(size_t(n));
    for (size_t i = 0; i < candidates.size(); ++i) {
      const float* s = candidates[i].data() + c0;
      for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < n; ++c) scaled[size_t(c)] = wg(r, c) * s[c];
        const grid::Params p = group_params(scaled.data(), n, g);
        for (int c = 0; c < n; ++c) d(r, c) = wg(r, c) - grid::fake_quantize(scaled[size_t(c)], p, maxq) / s[c];
      }
      std::fill(row_err.begin(), row_err.end(), 0.0);
      add_block_errors(d, c0, blocks, row_err.data());
      for (double e : row_err) err[i] += e;
    }
  }
}

// The same with the whole H (one objective block of width K): every candidate quantizes the
// chunk's full rows, since the cross-group terms need all of δ at once.
void scale_chunk_full(const Mat& w, int r0, int rows, const std::vector<Vec>& candidates, const QuantGrid& g,
                      const ObjectiveBlocks& whole, double* err) {
  const Mat wr = w.middleRows(r0, rows);
  std::vector<double> row_err(static_cast<size_t>(rows));
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Mat d = wr - fake_quantize_scaled(wr, candidates[i], g);
    std::fill(row_err.begin(), row_err.end(), 0.0);
    add_block_errors(d, 0, whole, row_err.data());
    for (double e : row_err) err[i] += e;
  }
}

// Clip search on rows [r0, r0 + rows): writes max_val rows.
void clip_chunk(const Mat& w, int r0, int rows, const QuantGrid& g, int n_grid, int steps,
                const ObjectiveBlocks& blocks, Mat& max_val) {
  const int k = int(w.cols()), maxq = g.max_q();
  std::vector<double> err(static_cast<size_t>(rows)), best(static_cast<size_t>(rows));
  std::vector<float> clipped;
  Mat d;
  for (int gi = 0; gi < g.num_groups(k); ++gi) {
    const int c0 = grid::group_begin(g, gi), n = grid::group_width(g, k, gi);
    const auto wg = w.block(r0, c0, rows, n);
    const Vec org_max = wg.cwiseAbs().rowwise().maxCoeff();
    std::fill(best.begin(), best.end(), std::numeric_limits<double>::infinity());
    d.resize(rows, n);
    clipped.resize(size_t(n));
    for (int i = 0; i < steps; ++i) {
      const float ratio = float(1.0 - double(i) / double(n_grid));
      for (int r = 0; r < rows; ++r) {
        const float m = org_max[r] * ratio;
        for (int c = 0; c < n; ++c) clipped[size_t(c)] = std::clamp(wg(r, c), -m, m);
        const grid::Params p = group_params(clipped.data(), n, g);
        for (int c = 0; c < n; ++c) d(r, c) = wg(r, c) - grid::fake_quantize(clipped[size_t(c)], p, maxq);
      }
      std::fill(err.begin(), err.end(), 0.0);
      add_block_errors(d, c0, blocks, err.data());
      for (int r = 0; r < rows; ++r)
        if (err[size_t(r)] < best[size_t(r)]) {  // strictly smaller: the widest range wins ties
          best[size_t(r)] = err[size_t(r)];
          max_val(r0 + r, gi) = org_max[r] * ratio;
        }
    }
  }
}

}  // namespace

ObjectiveBlocks objective_blocks(const InputStats& stats, const QuantGrid& g) {
  ObjectiveBlocks blocks;
  blocks.width = g.group_size > 0 ? g.group_size : kTile;
  for (int c0 = 0; c0 < stats.k(); c0 += blocks.width)
    blocks.h.push_back(stats.hessian_block(c0, std::min(blocks.width, stats.k() - c0)).cast<float>());
  return blocks;
}

double block_error(const Mat& w, const Mat& w_hat, const ObjectiveBlocks& blocks) {
  PTQ_ASSERT(w.rows() == w_hat.rows() && w.cols() == w_hat.cols());
  std::vector<double> partial(size_t(chunk_count(w.rows())));
  parallel_for_each(partial.size(), [&](size_t t) {
    const int r0 = int(t) * kChunkRows, rows = int(std::min<Eigen::Index>(kChunkRows, w.rows() - r0));
    partial[t] = chunk_error(w.middleRows(r0, rows), w_hat.middleRows(r0, rows), blocks);
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

Vec scales_for_alpha(const VecD& mean_abs, double alpha) {
  Vec s(mean_abs.size());
  for (Eigen::Index c = 0; c < s.size(); ++c)
    s[c] = std::max(std::pow(float(mean_abs[c]), float(alpha)), 1e-4f);
  return s / std::sqrt(s.maxCoeff() * s.minCoeff());
}

Mat fake_quantize_scaled(const Mat& w, const Vec& s, const QuantGrid& g) {
  const int k = int(w.cols()), maxq = g.max_q();
  PTQ_ASSERT(s.size() == 0 || s.size() == k);
  Mat out(w.rows(), k);
  std::vector<float> row(size_t(k), 0.0f);
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    for (int c = 0; c < k; ++c) row[size_t(c)] = s.size() ? w(r, c) * s[c] : w(r, c);
    for (int gi = 0; gi < g.num_groups(k); ++gi) {
      const int c0 = grid::group_begin(g, gi), n = grid::group_width(g, k, gi);
      const grid::Params p = grid::find_params(&row[size_t(c0)], n, g);
      for (int c = c0; c < c0 + n; ++c) {
        const float q = grid::fake_quantize(row[size_t(c)], p, maxq);
        out(r, c) = s.size() ? q / s[c] : q;
      }
    }
  }
  return out;
}

ScaleSearch search_scales(const std::vector<const Mat*>& layers, const InputStats& stats,
                          const QuantGrid& g, int n_grid, Objective objective) {
  PTQ_ASSERT(n_grid >= 1 && !layers.empty() && objective != Objective::kModule);
  ObjectiveBlocks blocks;
  if (objective == Objective::kFull) {
    blocks.width = stats.k();
    blocks.h.push_back(stats.hessian().cast<float>());
  } else {
    blocks = objective_blocks(stats, g);
  }
  const VecD mean_abs = stats.mean_abs();
  std::vector<Vec> candidates;
  for (int i = 0; i < n_grid; ++i) candidates.push_back(scales_for_alpha(mean_abs, double(i) / n_grid));
  struct Task {
    int layer, r0, rows;
  };
  std::vector<Task> tasks;  // layer, then chunk: the summation order
  for (int l = 0; l < int(layers.size()); ++l) {
    PTQ_ASSERT(layers[size_t(l)]->cols() == stats.k());
    const int n = int(layers[size_t(l)]->rows());
    for (int r0 = 0; r0 < n; r0 += kChunkRows) tasks.push_back({l, r0, std::min(kChunkRows, n - r0)});
  }
  std::vector<double> partial(tasks.size() * size_t(n_grid), 0.0);  // [task][candidate]
  parallel_for_each(tasks.size(), [&](size_t t) {
    const Task& task = tasks[t];
    double* err = &partial[t * size_t(n_grid)];
    if (objective == Objective::kFull)
      scale_chunk_full(*layers[size_t(task.layer)], task.r0, task.rows, candidates, g, blocks, err);
    else
      scale_chunk(*layers[size_t(task.layer)], task.r0, task.rows, candidates, g, blocks, err);
  });
  ScaleSearch out;
  out.errors.assign(size_t(n_grid), 0.0);
  for (size_t t = 0; t < tasks.size(); ++t)
    for (int i = 0; i < n_grid; ++i) out.errors[size_t(i)] += partial[t * size_t(n_grid) + size_t(i)];
  int best = 0;
  for (int i = 1; i < n_grid; ++i)
    if (out.errors[size_t(i)] < out.errors[size_t(best)]) best = i;
  out.alpha = double(best) / n_grid;
  out.scales = candidates[size_t(best)];
  return out;
}

ScaleSearch search_scales_module(const std::vector<const Mat*>& layers, const InputStats& stats, const QuantGrid& g,
                                 int n_grid, const std::function<double(const std::vector<const Mat*>&)>& module_error) {
  PTQ_ASSERT(n_grid >= 1 && !layers.empty() && module_error);
  const VecD mean_abs = stats.mean_abs();
  ScaleSearch out;
  out.errors.assign(size_t(n_grid), 0.0);
  int best = 0;
  std::vector<Mat> quantized(layers.size());
  std::vector<const Mat*> candidate;
  for (const Mat& q : quantized) candidate.push_back(&q);
  for (int i = 0; i < n_grid; ++i) {
    const Vec s = scales_for_alpha(mean_abs, double(i) / n_grid);
    parallel_for_each(layers.size(), [&](size_t l) { quantized[l] = fake_quantize_scaled(*layers[l], s, g); });
    out.errors[size_t(i)] = module_error(candidate);
    if (out.errors[size_t(i)] < out.errors[size_t(best)]) best = i;
  }
  out.alpha = double(best) / n_grid;
  out.scales = scales_for_alpha(mean_abs, out.alpha);
  return out;
}

Mat search_clip(const Mat& w, const InputStats& stats, const QuantGrid& g, int n_grid,
                double max_shrink) {
  PTQ_ASSERT(w.cols() == stats.k() && n_grid >= 1);
  const int steps = std::max(1, int(max_shrink * n_grid + 1e-9));  // llm-awq: int(0.5 * 20) = 10
  const ObjectiveBlocks blocks = objective_blocks(stats, g);
  Mat max_val(w.rows(), g.num_groups(int(w.cols())));
  parallel_for_each(size_t(chunk_count(w.rows())), [&](size_t t) {
    const int r0 = int(t) * kChunkRows, rows = int(std::min<Eigen::Index>(kChunkRows, w.rows() - r0));
    clip_chunk(w, r0, rows, g, n_grid, steps, blocks, max_val);
  });
  return max_val;
}

void apply_clip(Mat& w, const Mat& max_val, const QuantGrid& g) {
  const int k = int(w.cols());
  PTQ_ASSERT(max_val.rows() == w.rows() && max_val.cols() == g.num_groups(k));
  for (Eigen::Index r = 0; r < w.rows(); ++r)
    for (int gi = 0; gi < g.num_groups(k); ++gi) {
      const int c0 = grid::group_begin(g, gi), n = grid::group_width(g, k, gi);
      const float m = max_val(r, gi);
      for (int c = c0; c < c0 + n; ++c) w(r, c) = std::clamp(w(r, c), -m, m);
    }
}

}  // namespace ptq::awq
