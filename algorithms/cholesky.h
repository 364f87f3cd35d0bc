#pragma once
// Blocked fp32 Cholesky, multi-threaded and deterministic: the factor GPTQ propagates its
// errors with (docs/algorithms.md, "GPTQ").
// The diagonal blocks are factored in fp64 by LAPACK; everything else is a fixed grid of row
// tiles, each one single-threaded BLAS-3 call. The tile grid depends on n only,
// never on the thread count, so the result is bit-identical at any number of threads (a
// threaded LAPACK potrf picks its blocking by thread count and is not).

namespace ptq {

enum class StrictUpper { kZero, kScratch };

// a: row-major [n, n], leading dimension lda, whose lower triangle (diagonal included) holds a
// symmetric positive definite matrix; the strict upper triangle is scratch. On success the
// lower triangle holds L with A = L·Lᵀ and the strict upper triangle is zero, or left as
// scratch with kScratch (for a caller that overwrites it anyway). False when A is numerically
// not positive definite (a status: the caller raises the damping and retries).
bool cholesky_lower(float* a, int n, int lda, StrictUpper upper = StrictUpper::kZero);

}  // namespace ptq
