#include "algorithms/cholesky.h"

#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "ptq/blas.h"

namespace ptq {
namespace {

constexpr int kBlock = 128;  // diagonal block width, factored in fp64
constexpr int kPanel = 512;  // columns per panel: the inner dimension of the big trailing update
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

// trailing[r, c] -= panel[r, :]·panel[c, :] over the lower triangle of rows [0, rows) and
// columns [0, cols), one row tile per call. Tile t also writes the upper half of its diagonal
// square (scratch, zeroed at the end). Costlier tiles (more columns) are handed out first.
// Called inside a parallel region.
void subtract_outer_product(float* panel, int lda, int inner, int rows, int cols, float* trailing) {
#pragma omp for schedule(dynamic, 1)
  for (int t = tile_count(rows) - 1; t >= 0; --t) {
    const int r0 = t * kTile, r1 = std::min(rows, r0 + kTile), c = std::min(cols, r1);
    if (c > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, c, inner, -1.0f, at(panel, lda, r0, 0), lda,
                  panel, lda, 1.0f, at(trailing, lda, r0, 0), lda);
  }
}

// Columns [p0, p1) of L, right-looking over kBlock-wide steps that update only the panel's
// own columns; the rest of the matrix waits for one update with the whole panel.
bool factor_panel(float* a, int n, int lda, int p0, int p1) {
  for (int k0 = p0; k0 < p1; k0 += kBlock) {
    const int b = std::min(kBlock, p1 - k0), below = n - k0 - b;
    float* diag = at(a, lda, k0, k0);
    if (!factor_block_in_fp64(diag, b, lda)) return false;
    if (below == 0) break;
    float* under = at(a, lda, k0 + b, k0);  // [below, b]
#pragma omp parallel
    {
      FlushDenormals ftz;
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < tile_count(below); ++t) {
        const int r0 = t * kTile, r1 = std::min(below, r0 + kTile);
        cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, r1 - r0, b, 1.0f, diag,
                    lda, at(under, lda, r0, 0), lda);
      }
      subtract_outer_product(under, lda, b, below, p1 - (k0 + b), under + b);
    }
  }
  return true;
}

}  // namespace

// Two-level right-looking: a kPanel-wide panel is factored in kBlock steps, then the trailing
// lower triangle takes the panel's outer product in one pass of row tiles whose GEMMs have a
// kPanel-deep inner dimension (4× fewer passes over the trailing matrix than kBlock steps).
bool cholesky_lower(float* a, int n, int lda, StrictUpper upper) {
  BlasSingleThreaded single;
  FlushDenormals ftz;
  for (int p0 = 0; p0 < n; p0 += kPanel) {
    const int p1 = std::min(n, p0 + kPanel), below = n - p1;
    if (!factor_panel(a, n, lda, p0, p1)) return false;
    if (below == 0) break;
    float* panel = at(a, lda, p1, p0);  // [below, p1 - p0]
#pragma omp parallel
    {
      FlushDenormals ftz;
      subtract_outer_product(panel, lda, p1 - p0, below, below, panel + (p1 - p0));
    }
  }
  if (upper == StrictUpper::kZero) zero_strict_upper(a, n, lda);
  return true;
}

}  // namespace ptq
