#pragma once
// The read loop both bandwidth measurements use (bench_bandwidth, bench_kernels), so their
// figures are comparable.
#include <cstddef>

namespace ptq::bench {

// Sum of p[0, n rounded down to 128): eight independent AVX-512 accumulators keep the adds off
// the critical path, so the loop is limited by loads alone. p must be 64-byte aligned.
float sum_range(const float* p, size_t n);

}  // namespace ptq::bench
