// Memory read bandwidth of this machine: sum over a float array much larger than the last-level
// cache (1 GiB), best of N repetitions, at 1 and 2 threads. The packed kernels' effective GB/s
// (bench_kernels) is reported as a fraction of this figure. Smaller arrays show the cache levels.
//   ./bench_bandwidth --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "support/memory_read.h"

namespace {

// Best of the repetitions: the smallest time and, for the GB/s counter, the largest rate
// (`--benchmark_repetitions=N`); both are reported beside mean and median.
double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
void best_of(benchmark::internal::Benchmark* b) { b->ComputeStatistics("min", min_of)->ComputeStatistics("max", max_of); }

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// Touched once so that pages are mapped before timing.
float* array_of(size_t bytes) {
  static std::unique_ptr<float, FreeDeleter> data;
  static size_t size = 0;
  if (size < bytes) {
    data.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    std::memset(data.get(), 0, bytes);
    for (size_t i = 0; i < bytes / sizeof(float); i += 1024) data.get()[i] = float(i % 7);
    size = bytes;
  }
  return data.get();
}


void BM_ReadBandwidth(benchmark::State& state) {
  const size_t bytes = size_t(state.range(0)) << 20;
  const int threads = int(state.range(1));
  const float* p = array_of(bytes);
  const size_t n = bytes / sizeof(float);
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (int t = 0; t < threads; ++t) total += ptq::bench::sum_range(p + n / threads * t, n / threads);
    benchmark::DoNotOptimize(total);
  }
  state.counters["GB"] = benchmark::Counter(double(bytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}
BENCHMARK(BM_ReadBandwidth)
    ->ArgNames({"MiB", "threads"})
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Args({16, 1})
    ->Args({1, 1})
    ->Apply(best_of)->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
