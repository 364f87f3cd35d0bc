// QuantEase: one sweep equals a textbook coordinate-descent loop, rounded sweeps never raise the
// objective, init=gptq never loses to GPTQ, the outlier variant keeps its budget, results do not
// depend on the thread count. Synthetic layers (algorithms/synthetic_layer.h).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <gtest/gtest.h>
#include <omp.h>

#include <set>
#include <tuple>

#include "algorithms/gptq.h"
#include "algorithms/grid.h"
#include "algorithms/quantease.h"
#include "algorithms/synthetic_layer.h"
#include "ptq/error.h"

namespace ptq {
namespace {

struct Layer {
  Mat w;
  MatD h;
};

Layer make_layer(int n, int k, uint64_t seed, int outliers = 4) {
  synthetic_layer::Activations act(k, k / 8, 0.1f, outliers, 25.0f, seed);
  InputStats s(k);
  s.add_batch(act.sample(4 * k, seed + 7));
  return {synthetic_layer::weights(n, k, seed + 1), s.hessian()};
}

QuantEaseOptions options(int bits, int group, int iters) {
  QuantEaseOptions o;
  o.grid.bits = bits;
  o.grid.group_size = group;
  o.iters = iters;
  return o;
}

// The textbook loop: for each column, for each row, the exact minimiser over that coordinate
// with all others fixed, rounded to the column's grid (fitted on W per row and group).
Mat textbook_sweep(const Mat& w, const MatD& h, const QuantGrid& g) {
  const int n = int(w.rows()), k = int(w.cols());
  Mat x = w;
  const MatD wh = w.cast<double>() * h;
  for (int j = 0; j < k; ++j) {
    const int gi = g.group_size <= 0 ? 0 : j / g.group_size;
    for (int r = 0; r < n; ++r) {
      double s = 0;
      for (int c = 0; c < k; ++c)
        if (c != j) s += double(x(r, c)) * h(c, j);
      const float u = float((wh(r, j) - s) / h(j, j));
      const int c0 = grid::group_begin(g, gi), width = grid::group_width(g, k, gi);
      const grid::Params p = grid::find_params(&w(r, c0), width, g);
      x(r, j) = grid::fake_quantize(u, p, g.max_q());
    }
  }
  return x;
}

TEST(QuantEase, OneSweepEqualsTheTextbookLoop) {
  for (int group : {16, -1}) {
    Layer l = make_layer(24, 64, 11);
    QuantEaseOptions o = options(3, group, 1);
    Mat first;
    o.on_sweep = [&](int sweep, const Mat& w_hat, bool, double) {
      if (sweep == 0) first = w_hat;
    };
    quantease_quantize(l.w, l.h, o, nullptr);
    const Mat ref = textbook_sweep(l.w, l.h, o.grid);
    ASSERT_EQ(first.rows(), ref.rows());
    int differ = 0;
    for (Eigen::Index i = 0; i < ref.size(); ++i) differ += first.data()[i] != ref.data()[i];
    EXPECT_EQ(differ, 0) << "group " << group;
  }
}

TEST(QuantEase, RoundedSweepsNeverRaiseTheObjective) {
  Layer l = make_layer(64, 256, 21);
  for (bool relax : {true, false}) {
    QuantEaseOptions o = options(3, 64, 30);
    o.relax = relax;
    std::vector<std::tuple<bool, double, double>> trace;  // rounded, tracked, exact
    o.on_sweep = [&](int, const Mat& w_hat, bool rounded, double f) {
      trace.emplace_back(rounded, f, quantease_objective(l.w, w_hat, l.h));
    };
    quantease_quantize(l.w, l.h, o, nullptr);
    ASSERT_EQ(trace.size(), 30u);
    int relaxed = 0;
    for (size_t s = 0; s < trace.size(); ++s) {
      const auto [rounded, tracked, exact] = trace[s];
      relaxed += !rounded;
      EXPECT_NEAR(tracked, exact, 1e-4 * exact) << "sweep " << s;
      if (s == 0 || !rounded || !std::get<0>(trace[s - 1])) continue;  // start must be on the grid
      EXPECT_LE(exact, std::get<2>(trace[s - 1]) * (1 + 1e-7)) << "sweep " << s;
    }
    EXPECT_EQ(relaxed, relax ? 9 : 0);  // sweeps 1, 4, ..., 25
  }
}

TEST(QuantEase, InitGptqNeverLosesToGptq) {
  int strictly_better = 0, layers = 0;
  for (auto [n, k, act_order] : {std::tuple{64, 256, false}, {96, 128, true}, {48, 512, false}, {128, 256, true}})
    for (uint64_t seed : {31u, 32u}) {
      Layer l = make_layer(n, k, seed + uint64_t(n));
      QuantEaseOptions o = options(3, 64, 30);
      o.init = QuantEaseInit::kGptq;
      o.act_order = act_order;
      GptqOptions go;
      go.grid = o.grid;
      go.act_order = act_order;
      const double gptq = quantease_objective(l.w, gptq_quantize(l.w, l.h, go, nullptr).dequantize(), l.h);
      const QuantizedLayer q = quantease_quantize(l.w, l.h, o, nullptr);
      const double ours = quantease_objective(l.w, q.effective_weight(), l.h);
      EXPECT_LE(ours, gptq * (1 + 1e-6)) << n << "x" << k << " seed " << seed;
      strictly_better += ours < gptq * (1 - 1e-3);
      ++layers;
    }
  EXPECT_GE(strictly_better, layers / 2) << "coordinate descent should improve on GPTQ's codes";
}

TEST(QuantEase, BeatsRtnAndMatchesItsGrid) {
  Layer l = make_layer(64, 256, 41);
  QuantEaseOptions o = options(3, 64, 30);
  const QuantizedLayer q = quantease_quantize(l.w, l.h, o, nullptr);
  const GridCodes rtn = grid::quantize_rtn(l.w, o.grid);
  // Same grid fitted up front on W, so the same scales and zeros as RTN.
  EXPECT_TRUE(q.grid.scales == rtn.scales);
  EXPECT_TRUE(q.grid.zeros == rtn.zeros);
  EXPECT_LT(quantease_objective(l.w, q.effective_weight(), l.h),
            0.5 * quantease_objective(l.w, rtn.dequantize(), l.h));
  // The codes decode exactly to the iterate the solver kept.
  EXPECT_TRUE(q.grid.dequantize() == q.effective_weight());
}

TEST(QuantEase, OutliersKeepTheirBudgetAndLowerTheError) {
  Layer l = make_layer(64, 256, 51);
  // Planted outliers: a few large weights the grid cannot hold.
  for (int i = 0; i < 40; ++i) l.w((i * 7) % 64, (i * 37) % 256) = (i % 2 ? 1.0f : -1.0f) * 0.8f;
  QuantEaseOptions plain = options(3, 64, 20);
  QuantEaseOptions with = plain;
  with.outliers = 0.01;
  const QuantizedLayer a = quantease_quantize(l.w, l.h, plain, nullptr);
  const QuantizedLayer b = quantease_quantize(l.w, l.h, with, nullptr);
  ASSERT_TRUE(b.sparse.has_value());
  EXPECT_EQ(b.sparse->nnz(), std::llround(64.0 * 256 * 0.01));
  EXPECT_LT(quantease_objective(l.w, b.effective_weight(), l.h), 0.5 * quantease_objective(l.w, a.effective_weight(), l.h));
  with.structured = true;  // whole input columns
  const QuantizedLayer c = quantease_quantize(l.w, l.h, with, nullptr);
  ASSERT_TRUE(c.sparse.has_value());
  std::set<int32_t> cols(c.sparse->col_ids.begin(), c.sparse->col_ids.end());
  EXPECT_LE(cols.size(), size_t(std::lround(256 * 0.01)));
}

TEST(QuantEase, IdenticalAtOneAndTwoThreads) {
  Layer l = make_layer(96, 384, 61);
  QuantEaseOptions o = options(4, 128, 12);
  o.act_order = true;
  o.outliers = 0.005;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const QuantizedLayer one = quantease_quantize(l.w, l.h, o, nullptr);
  omp_set_num_threads(2);
  const QuantizedLayer two = quantease_quantize(l.w, l.h, o, nullptr);
  omp_set_num_threads(saved);
  EXPECT_TRUE(one == two);
}

TEST(QuantEase, SpecRoundTripsAndRejectsBadArguments) {
  auto q = make_quantizer(parse_spec("quantease(w3,g128,act_order,init=gptq,outliers=0.01,structured)"));
  EXPECT_EQ(q->spec(), "quantease(w3,g128,act_order,init=gptq,outliers=0.01,structured)");
  EXPECT_EQ(make_quantizer(parse_spec(q->spec()))->spec(), q->spec());
  EXPECT_EQ(make_quantizer(parse_spec("quantease(w4,g64,iters=30,init=none)"))->spec(), "quantease(w4,g64)");
  EXPECT_THROW(make_quantizer(parse_spec("quantease(init=magic)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("quantease(structured)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("quantease(outliers=0.7)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("quantease(frob)")), Error);
  Mat w = Mat::Ones(4, 8);
  w(0, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantease_quantize(w, MatD::Identity(8, 8), options(4, -1, 2), nullptr), Error);
}

}  // namespace
}  // namespace ptq
