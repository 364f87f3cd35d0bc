// Weighted low-rank fits and the lorc refiner: the fit equals an independent textbook
// construction (symmetric square root of H, Eigen's Jacobi SVD), its weighted error is the tail
// of the singular values and falls with the rank, full rank reconstructs E, the refiner's fp16
// branch lowers the layer's output error and counts its bits, results do not depend on the
// thread count. Synthetic layers (algorithms/synthetic_layer.h).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <gtest/gtest.h>
#include <omp.h>

#include <Eigen/Eigenvalues>
#include <Eigen/SVD>

#include "algorithms/grid.h"
#include "algorithms/low_rank.h"
#include "algorithms/synthetic_layer.h"
#include "ptq/blas.h"
#include "ptq/error.h"
#include "ptq/spec.h"

namespace ptq {
namespace {

struct Layer {
  Mat w;
  InputStats stats;
};

Layer make_layer(int n, int k, uint64_t seed) {
  synthetic_layer::Activations act(k, k / 8, 0.1f, 4, 25.0f, seed);
  Layer l{synthetic_layer::weights(n, k, seed + 1), InputStats(k)};
  l.stats.add_batch(act.sample(4 * k, seed + 7));
  return l;
}

MatD damped(const MatD& h, double damp) {
  MatD d = h;
  d.diagonal().array() += damp * h.diagonal().mean();
  return d;
}

// The RTN error of a 3-bit g32 grid: the error a branch is fitted to.
MatD rtn_error(const Mat& w) {
  QuantGrid g;
  g.bits = 3;
  g.group_size = 32;
  return (w - grid::quantize_rtn(w, g).dequantize()).cast<double>();
}

// [E·H^½]_r·H^-½ with H^½ the symmetric root from an eigendecomposition and a Jacobi SVD.
MatD textbook_fit(const MatD& e, const MatD& h, int r) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(h);
  const Eigen::VectorXd root = eig.eigenvalues().cwiseSqrt();
  const Eigen::MatrixXd half = eig.eigenvectors() * root.asDiagonal() * eig.eigenvectors().transpose();
  const Eigen::MatrixXd inv_half = eig.eigenvectors() * root.cwiseInverse().asDiagonal() * eig.eigenvectors().transpose();
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(Eigen::MatrixXd(e) * half, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::MatrixXd top = svd.matrixU().leftCols(r) * svd.singularValues().head(r).asDiagonal() *
                              svd.matrixV().leftCols(r).transpose();
  return top * inv_half;
}

LowRankOptions options(int rank, LowRankWeight w = LowRankWeight::kHessian) {
  LowRankOptions o;
  o.rank = rank;
  o.weight = w;
  return o;
}

TEST(LowRank, HessianFitEqualsTheTextbookConstruction) {
  const Layer l = make_layer(48, 64, 3);
  const MatD e = rtn_error(l.w), hd = damped(l.stats.hessian(), 0.01);
  for (int r : {1, 4, 16}) {
    SCOPED_TRACE(r);
    const LowRankFit fit = fit_low_rank(e, &l.stats.hessian(), options(r), nullptr);
    const MatD ref = textbook_fit(e, hd, r);
    EXPECT_LE((fit.l1 * fit.l2 - ref).cwiseAbs().maxCoeff(), 1e-9 * ref.cwiseAbs().maxCoeff());
    EXPECT_EQ(fit.l1.cols(), r);
  }
}

TEST(LowRank, WeightedErrorIsTheSingularTailAndFallsWithTheRank) {
  const Layer l = make_layer(40, 96, 5);
  const MatD e = rtn_error(l.w), hd = damped(l.stats.hessian(), 0.01);
  MatD diag = MatD::Zero(96, 96);
  diag.diagonal() = hd.diagonal();
  for (LowRankWeight w : {LowRankWeight::kHessian, LowRankWeight::kDiagonal, LowRankWeight::kNone}) {
    SCOPED_TRACE(int(w));
    // Each weighting in its own metric: the damped H, its diagonal, or none.
    const MatD* metric = w == LowRankWeight::kHessian ? &hd : w == LowRankWeight::kDiagonal ? &diag : nullptr;
    double previous = weighted_error(e, MatD::Zero(e.rows(), e.cols()), metric);
    for (int r : {1, 2, 4, 8, 16, 32}) {
      const LowRankFit fit = fit_low_rank(e, &l.stats.hessian(), options(r, w), nullptr);
      const double err = weighted_error(e, fit.l1 * fit.l2, metric);
      EXPECT_NEAR(err, fit.residual, 1e-9 * fit.initial) << "rank " << r;
      EXPECT_LT(err, previous) << "rank " << r;
      previous = err;
    }
  }
}

TEST(LowRank, FullRankReconstructsTheMatrix) {
  const Layer l = make_layer(24, 64, 7);
  const MatD e = rtn_error(l.w);
  for (LowRankWeight w : {LowRankWeight::kHessian, LowRankWeight::kDiagonal, LowRankWeight::kNone}) {
    QuantLog log;
    const LowRankFit fit = fit_low_rank(e, &l.stats.hessian(), options(1000, w), &log);
    EXPECT_EQ(fit.l1.cols(), 24);  // clamped to min(N, K), and said so
    ASSERT_FALSE(log.messages.empty());
    EXPECT_NE(log.messages[0].find("clamped to 24"), std::string::npos) << log.messages[0];
    EXPECT_LE((fit.l1 * fit.l2 - e).cwiseAbs().maxCoeff(), 1e-12 * e.cwiseAbs().maxCoeff() * 64);
    EXPECT_LE(fit.residual, 1e-20 * fit.initial);
  }
}

TEST(LowRank, TheHessianWeightingBeatsTheOthersOnTheOutputError) {
  const Layer l = make_layer(64, 128, 9);
  const MatD e = rtn_error(l.w), hd = damped(l.stats.hessian(), 0.01);
  const int r = 8;
  auto err = [&](LowRankWeight w) {
    const LowRankFit f = fit_low_rank(e, &l.stats.hessian(), options(r, w), nullptr);
    return weighted_error(e, f.l1 * f.l2, &hd);
  };
  const double full = err(LowRankWeight::kHessian);
  EXPECT_LT(full, err(LowRankWeight::kDiagonal));
  EXPECT_LT(err(LowRankWeight::kDiagonal), err(LowRankWeight::kNone));  // outlier channels dominate H
}

TEST(LowRank, FactorsAreBalancedAndFp16Exact) {
  const Layer l = make_layer(32, 64, 11);
  const LowRankFit fit = fit_low_rank(rtn_error(l.w), &l.stats.hessian(), options(6), nullptr);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(fit.l1.col(i).norm(), fit.l2.row(i).norm(), 1e-12 * fit.l1.col(i).norm());
  const LowRankBranch b = fp16_branch(fit);
  EXPECT_EQ(b.bits, 16);
  for (Eigen::Index i = 0; i < b.l1.size(); ++i) EXPECT_EQ(b.l1.data()[i], f16_to_f32(f32_to_f16(b.l1.data()[i])));
  for (Eigen::Index i = 0; i < b.l2.size(); ++i) EXPECT_EQ(b.l2.data()[i], f16_to_f32(f32_to_f16(b.l2.data()[i])));
  EXPECT_LE((b.product().cast<double>() - fit.l1 * fit.l2).cwiseAbs().maxCoeff(),
            2e-3 * (fit.l1 * fit.l2).cwiseAbs().maxCoeff());
}

TEST(LowRank, SingularHessianIsDampedOrFallsBackAndSaysSo) {
  Layer l = make_layer(16, 32, 13);
  const MatD e = rtn_error(l.w);
  MatD h = MatD::Zero(32, 32);
  h(0, 0) = 1;  // one live channel: with damp 0 H is singular
  LowRankOptions o = options(4);
  o.damp = 0;
  QuantLog log;
  const LowRankFit fit = fit_low_rank(e, &h, o, &log);
  ASSERT_FALSE(log.messages.empty());
  EXPECT_NE(log.messages[0].find("damping raised"), std::string::npos) << log.messages[0];
  EXPECT_GT(fit.damp, 0);
  EXPECT_TRUE(fit.l1.allFinite() && fit.l2.allFinite());
  QuantLog zero_log;
  const MatD zero = MatD::Zero(32, 32);
  fit_low_rank(e, &zero, options(4), &zero_log);
  ASSERT_FALSE(zero_log.messages.empty());
  EXPECT_NE(zero_log.messages[0].find("fitted unweighted"), std::string::npos);
  MatD bad = e;
  bad(0, 0) = std::nan("");
  EXPECT_THROW(fit_low_rank(bad, &l.stats.hessian(), options(4), nullptr), Error);
}

TEST(LowRank, IdenticalAtOneAndTwoThreads) {
  const Layer l = make_layer(96, 256, 15);
  const MatD e = rtn_error(l.w);
  const int saved = omp_get_max_threads();
  const int saved_blas = openblas_get_num_threads();
  for (LowRankSvd svd : {LowRankSvd::kExact, LowRankSvd::kRandomized}) {
    LowRankOptions o = options(16);
    o.svd = svd;
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
    const LowRankFit one = fit_low_rank(e, &l.stats.hessian(), o, nullptr);
    omp_set_num_threads(2);
    openblas_set_num_threads(2);
    const LowRankFit two = fit_low_rank(e, &l.stats.hessian(), o, nullptr);
    omp_set_num_threads(saved);
    openblas_set_num_threads(saved_blas);
    EXPECT_TRUE(one.l1 == two.l1) << int(svd);
    EXPECT_TRUE(one.l2 == two.l2) << int(svd);
  }
}

// The randomized range finder on a layer wider than the exact path's limit's test size: within
// 2% of the exact SVD's weighted error, its residual the true f(L), and reproducible.
TEST(LowRank, RandomizedSvdIsCloseToExactAndReproducible) {
  const Layer l = make_layer(192, 384, 19);
  const MatD e = rtn_error(l.w), hd = damped(l.stats.hessian(), 0.01);
  for (LowRankWeight w : {LowRankWeight::kHessian, LowRankWeight::kNone}) {
    SCOPED_TRACE(int(w));
    const MatD* metric = w == LowRankWeight::kHessian ? &hd : nullptr;
    LowRankOptions o = options(16, w);
    o.svd = LowRankSvd::kExact;
    const LowRankFit exact = fit_low_rank(e, &l.stats.hessian(), o, nullptr);
    o.svd = LowRankSvd::kRandomized;
    const LowRankFit fast = fit_low_rank(e, &l.stats.hessian(), o, nullptr);
    EXPECT_TRUE(fast.randomized);
    EXPECT_FALSE(exact.randomized);
    const double err = weighted_error(e, fast.l1 * fast.l2, metric);
    EXPECT_NEAR(err, fast.residual, 1e-9 * fast.initial);
    EXPECT_NEAR(fast.initial, exact.initial, 1e-9 * exact.initial);
    EXPECT_GE(err, exact.residual * (1 - 1e-9));
    EXPECT_LE(err - exact.residual, 0.02 * (exact.initial - exact.residual));
    const LowRankFit again = fit_low_rank(e, &l.stats.hessian(), o, nullptr);
    EXPECT_TRUE(again.l1 == fast.l1 && again.l2 == fast.l2);
    o.seed = 1;
    EXPECT_FALSE(fit_low_rank(e, &l.stats.hessian(), o, nullptr).l1 == fast.l1);
  }
}

std::unique_ptr<LayerRefiner> lorc(const std::string& spec) { return make_refiner(parse_spec(spec)); }

TEST(Lorc, SpecRoundTripsAndRejectsBadArguments) {
  EXPECT_EQ(lorc("lorc")->spec(), "lorc(r32)");
  for (const char* s : {"lorc(r8)", "lorc(r8,diag)", "lorc(r4,hessian,damp=0.1)", "lorc(r4,svd=exact)",
                        "lorc(r4,svd=randomized,seed=3)"})
    EXPECT_EQ(lorc(s)->spec(), s);
  EXPECT_EQ(lorc("lorc(r4,plain)")->spec(), "lorc(r4)");  // the default weighting
  EXPECT_FALSE(lorc("lorc(r4)")->needs_stats());
  EXPECT_TRUE(lorc("lorc(r4,diag)")->needs_stats());
  EXPECT_TRUE(lorc("lorc(r4,hessian)")->needs_stats());
  for (const char* s : {"lorc(r0)", "lorc(r4,diag,plain)", "lorc(r4,hessian,plain)", "lorc(r4,bits=8)", "lorc(r4,damp=-1)", "lorc(r4,svd=lanczos)",
                        "lorc(r4,seed=-1)"})
    EXPECT_THROW(lorc(s), Error) << s;
  EXPECT_EQ(stage_role("lorc"), StageRole::kRefiner);
}

TEST(Lorc, BranchLowersTheOutputErrorAndCountsItsBits) {
  const Layer l = make_layer(64, 128, 17);
  QuantGrid g;
  g.bits = 3;
  g.group_size = 32;
  const QuantizedLayer plain = QuantizedLayer::from_grid(grid::quantize_rtn(l.w, g));
  const auto rtn = make_quantizer(parse_spec("rtn(w3,g32)"));
  double previous = relative_output_error(l.w, plain.stored_weight(), l.stats.hessian());
  for (int r : {2, 8, 32}) {
    QuantizedLayer q = plain;
    QuantLog log;
    lorc("lorc(r" + std::to_string(r) + ",hessian)")->refine(*rtn, l.w, &l.stats, q, &log);
    ASSERT_TRUE(q.low_rank);
    EXPECT_EQ(q.part_names(), "grid+low_rank");
    EXPECT_NEAR(q.storage_bits() - plain.storage_bits(), 16.0 * r * (64 + 128), 1e-6);
    const double err = relative_output_error(l.w, q.stored_weight(), l.stats.hessian());
    EXPECT_LT(err, previous) << "rank " << r;
    previous = err;
    ASSERT_FALSE(log.messages.empty());
    EXPECT_NE(log.messages.back().find("rank-" + std::to_string(r) + " branch leaves"), std::string::npos);
    EXPECT_THROW(lorc("lorc(r2)")->refine(*rtn, l.w, &l.stats, q, nullptr), Error);  // one branch per layer
  }
  QuantizedLayer q = plain;
  EXPECT_THROW(lorc("lorc(r2,hessian)")->refine(*rtn, l.w, nullptr, q, nullptr), Error);  // weighted fit without inputs
  lorc("lorc(r2)")->refine(*rtn, l.w, nullptr, q, nullptr);
  EXPECT_TRUE(q.low_rank);
}

// LQ-LoRA alternates with the recipe's quantizer; started from the quantizer's result
// (init=lorc) it can only lower that lorc's objective, iters=0 is lorc, and every iterate stays on the quantizer's grid.
TEST(LqLora, NeverLosesToLorcAndStaysOnTheQuantizersGrid) {
  for (const char* quantizer : {"rtn(w3,g32)", "gptq(w3,g32)"}) {
    SCOPED_TRACE(quantizer);
    const Layer l = make_layer(64, 128, 21);
    const auto quant = make_quantizer(parse_spec(quantizer));
    const QuantizedLayer base = quant->quantize(l.w, &l.stats, nullptr);
    auto refined = [&](const std::string& spec, QuantLog* log = nullptr) {
      QuantizedLayer q = base;
      make_refiner(parse_spec(spec))->refine(*quant, l.w, &l.stats, q, log);
      return q;
    };
    auto err = [&](const QuantizedLayer& q) { return relative_output_error(l.w, q.stored_weight(), l.stats.hessian()); };
    const QuantizedLayer lorc8 = refined("lorc(r8,hessian)");
    QuantLog log;
    const QuantizedLayer lq = refined("lqlora(r8,init=lorc)", &log);
    EXPECT_LE(err(lq), err(lorc8));
    EXPECT_TRUE(refined("lqlora(r8,init=lorc,iters=0)") == lorc8);
    EXPECT_EQ(lq.grid.grid.bits, 3);
    EXPECT_EQ(lq.grid.grid.group_size, 32);
    EXPECT_EQ(lq.low_rank->rank(), 8);
    ASSERT_FALSE(log.messages.empty());
    EXPECT_NE(log.messages[0].find("improving iterations"), std::string::npos) << log.messages[0];
    // The default, the reference's start (Q = 0, L = fit(W)), beats the quantizer alone.
    EXPECT_LT(err(refined("lqlora(r8)")), err(base));
    EXPECT_EQ(make_refiner(parse_spec("lqlora(r8,init=svd,hessian)"))->spec(), "lqlora(r8)");
  }
}

TEST(LqLora, SpecRoundTripsAndRejectsBadArguments) {
  for (const char* s : {"lqlora(r32)", "lqlora(r16,plain,iters=3)", "lqlora(r8,diag,init=lorc)"})
    EXPECT_EQ(make_refiner(parse_spec(s))->spec(), s);
  for (const char* s : {"lqlora(r8,iters=-1)", "lqlora(r8,init=zero)", "lqlora(r8,alpha=2)"})
    EXPECT_THROW(make_refiner(parse_spec(s)), Error) << s;
}

}  // namespace
}  // namespace ptq
