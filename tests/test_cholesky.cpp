// The blocked fp32 Cholesky behind GPTQ's update factor
// (algorithms/cholesky.h): against fp64 LAPACK-grade results from Eigen, across the block and
// tile and panel edges (127/128/129, 255/256/257, 511/512/513 ...), bit-identical at 1 and 2 threads, and the
// not-positive-definite status.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>

#include "algorithms/cholesky.h"
#include "ptq/tensor.h"

namespace ptq {
namespace {

// A well-conditioned SPD matrix with correlated entries, like a damped Hessian.
MatD spd(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  MatD x(2 * n, n);
  for (int i = 0; i < x.rows(); ++i)
    for (int j = 0; j < n; ++j) x(i, j) = normal(rng);
  MatD a = x.transpose() * x / x.rows();
  a.diagonal().array() += 0.05;
  return a;
}

// Row-major fp32 copy of the lower triangle, garbage (NaN) above it: the routines must not
// read it.
Mat lower_with_garbage(const MatD& a) {
  const int n = static_cast<int>(a.rows());
  Mat out(n, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) out(i, j) = j <= i ? static_cast<float>(a(i, j)) : std::nanf("");
  return out;
}

class CholeskySizes : public ::testing::TestWithParam<int> {};

TEST_P(CholeskySizes, MatchesFp64) {
  const int n = GetParam();
  const MatD a = spd(n, 100 + n);
  Mat l = lower_with_garbage(a);
  ASSERT_TRUE(cholesky_lower(l.data(), n, n));
  EXPECT_EQ(l.triangularView<Eigen::StrictlyUpper>().toDenseMatrix().cwiseAbs().maxCoeff(), 0.0f);
  const MatD l_ref = a.llt().matrixL();
  const double factor_err = (l.cast<double>() - l_ref).norm() / l_ref.norm();
  EXPECT_LT(factor_err, 2e-6) << n;
  const MatD ld = l.cast<double>();
  EXPECT_LT((ld * ld.transpose() - a).norm() / a.norm(), 1e-6) << n;
}

INSTANTIATE_TEST_SUITE_P(BlockAndTileEdges, CholeskySizes,
                         ::testing::Values(1, 2, 127, 128, 129, 255, 256, 257, 300, 511, 512, 513, 700, 1100));

// A leading dimension wider than n: only the n×n corner is touched.
TEST(Cholesky, HonoursTheLeadingDimension) {
  const int n = 150, lda = 160;
  const MatD a = spd(n, 7);
  Mat buf = Mat::Constant(n, lda, 42.0f);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) buf(i, j) = static_cast<float>(a(i, j));
  ASSERT_TRUE(cholesky_lower(buf.data(), n, lda));
  EXPECT_EQ(buf.rightCols(lda - n).minCoeff(), 42.0f);
  EXPECT_EQ(buf.rightCols(lda - n).maxCoeff(), 42.0f);
  const MatD l_ref = a.llt().matrixL();
  EXPECT_LT((buf.leftCols(n).cast<double>() - l_ref).norm() / l_ref.norm(), 2e-6);
}

TEST(Cholesky, BitIdenticalAtOneAndTwoThreads) {
  const int n = 700;
  const MatD a = spd(n, 3);
  const int saved = omp_get_max_threads();
  Mat results[2];
  for (int t : {1, 2}) {
    omp_set_num_threads(t);
    Mat l = lower_with_garbage(a);
    ASSERT_TRUE(cholesky_lower(l.data(), n, n));
    results[t - 1] = l;
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), sizeof(float) * results[0].size()), 0);
}

TEST(Cholesky, NotPositiveDefiniteIsAStatus) {
  for (int n : {5, 200, 300}) {
    MatD a = spd(n, 9);
    a(n - 1, n - 1) = -1.0;  // the last pivot goes negative: found in the last diagonal block
    Mat l = lower_with_garbage(a);
    EXPECT_FALSE(cholesky_lower(l.data(), n, n)) << n;
  }
  Mat zero = Mat::Zero(130, 130);
  EXPECT_FALSE(cholesky_lower(zero.data(), 130, 130));
}

}  // namespace
}  // namespace ptq
