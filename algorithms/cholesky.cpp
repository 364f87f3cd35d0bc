#include "algorithms/cholesky.h"

#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "ptq/blas.h"

namespace ptq {
namespace {

constexpr int kBlock = 128;  // diagonal block width: the inner dimension of every tile GEMM
constexpr int kTile = 256;   // rows per parallel tile: large enough for GEMM to run near peak

int tile_count(int rows) { return (rows + kTile - 1) / kTile; }

float* at(float* a, int lda, int r, int c) { return a + static_cast<size_t>(r) * lda + c; }

// The b x b diagonal block through an fp64 copy: its error would otherwise enter every later
// step. Row-major lower is column-major upper on the same buffer, hence the 'U' call.
bool factor_block_in_fp64(float* a, int b, int lda) {
  std::vector<double> d(static_cast<size_t>(b) * b, 0.0);
  for (int i = 0; i < b; ++i)
    for (int j = 0; j <= i; ++j) d[static_cast<size_t>(i) * b + j] = a[static_cast<size_t>(i) * lda + j];
  if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', b, d.data(), b) != 0) return false;
  for (int i = 0; i < b; ++i)
    for (int j = 0; j < b; ++j) {
      const double v = j <= i ? d[static_cast<size_t>(i) * b + j] : 0.0;
      if (!std::isfinite(v)) return false;
      a[static_cast<size_t>(i) * lda + j] = static_cast<float>(v);
    }
  return true;
}

void zero_strict_upper(float* a, int n, int lda) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) std::fill(at(a, lda, i, i + 1), at(a, lda, i, n), 0.0f);
}

}  // namespace

// Right-looking: factor the diagonal block, solve the panel below it, then subtract the
// panel's outer product from the trailing lower triangle, one row tile at a time.
bool cholesky_lower(float* a, int n, int lda) {
  BlasSingleThreaded single;
  FlushDenormals ftz;
  for (int k0 = 0; k0 < n; k0 += kBlock) {
    const int b = std::min(kBlock, n - k0), below = n - k0 - b;
    float* diag = at(a, lda, k0, k0);
    if (!factor_block_in_fp64(diag, b, lda)) return false;
    if (below == 0) break;
    float* panel = at(a, lda, k0 + b, k0);  // [below, b]
    float* trailing = panel + b;            // [below, below], lower triangle
    const int tiles = tile_count(below);
#pragma omp parallel
    {
      FlushDenormals ftz;
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < tiles; ++t) {
        const int r0 = t * kTile, r1 = std::min(below, r0 + kTile);
        cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, r1 - r0, b, 1.0f, diag,
                    lda, at(panel, lda, r0, 0), lda);
      }
      // Tile t updates trailing[r0:r1, 0:r1]: its part of the lower triangle plus the upper
      // half of its diagonal square (scratch). Costlier tiles (larger r1) are handed out first.
#pragma omp for schedule(dynamic, 1)
      for (int t = tiles - 1; t >= 0; --t) {
        const int r0 = t * kTile, r1 = std::min(below, r0 + kTile);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, b, -1.0f, at(panel, lda, r0, 0), lda,
                    panel, lda, 1.0f, at(trailing, lda, r0, 0), lda);
      }
    }
  }
  zero_strict_upper(a, n, lda);
  return true;
}

}  // namespace ptq
