// Packed GEMV / small-batch GEMM (formats/kernels) against fp32 Eigen on the same shape, at 1
// and 2 threads, plus a 1 GiB read in the same run so that effective bandwidth can be stated as
// a fraction of what the machine streams. The GB counter is a rate (GB/s) of the bytes a call
// must read: packed codes + group scales/zeros (PackedMatrix::weight_bytes), or N·K·4 for fp32.
// Weights are random codes with g128 groups (timing does not depend on their values). path:
// 0 ref, 1 avx2, 2 avx512; act: 0 fp32 activations, 1 int8x3 (the default arithmetic), 2 int8 (opt-in).
//   ./bench_kernels --benchmark_filter='tokens:1/threads:1' --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true --benchmark_min_time=0.2
// "Warm" benchmarks reuse one matrix (4-bit 4096² = 9.0 MB stays in this CPU's 32 MB L3);
// BM_PackedGemvCold cycles through 8 copies (72 MB) so each call streams from DRAM.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "support/memory_read.h"

#include "formats/kernels/kernels.h"
#include "ptq/parallel.h"

namespace {

// Best of the repetitions: the smallest time and, for the GB/s counter, the largest rate
// (`--benchmark_repetitions=N`); both are reported beside mean and median.
double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
void best_of(benchmark::internal::Benchmark* b) { b->ComputeStatistics("min", min_of)->ComputeStatistics("max", max_of); }

using namespace ptq;
using namespace ptq::kernels;

constexpr int kGroupSize = 128;

GridCodes random_weight(int n, int k, int bits, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GridCodes q;
  q.rows = n;
  q.cols = k;
  q.grid.bits = bits;
  q.grid.group_size = kGroupSize;
  const int groups = q.grid.num_groups(k);
  q.q.resize(size_t(n) * k);
  for (auto& v : q.q) v = uint8_t(rng() & uint64_t(q.grid.max_q()));
  q.scales = Mat::Constant(n, groups, 0.01f);
  q.zeros.resize(n, groups);
  for (int r = 0; r < n; ++r)
    for (int g = 0; g < groups; ++g) q.zeros(r, g) = float(rng() & uint64_t(q.grid.max_q()));
  q.g_idx.resize(k);
  for (int c = 0; c < k; ++c) q.g_idx[c] = c / kGroupSize;
  return q;
}

const PackedMatrix& packed(int n, int k, int bits) {
  static std::map<std::tuple<int, int, int>, PackedMatrix> cache;
  const auto key = std::make_tuple(n, k, bits);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, pack_matrix(random_weight(n, k, bits, 1))).first;
  return it->second;
}

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (auto& e : v) e = float(int(rng() % 2001) - 1000) / 1000.0f;
  return v;
}

void set_counters(benchmark::State& state, double bytes, int threads) {
  state.counters["GB"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}

// Args: N, K, bits, tokens, threads, path (0 ref, 1 avx2, 2 avx512), act (0 fp32, 1 int8x3, 2 int8).
void BM_Packed(benchmark::State& state) {
  const int n = int(state.range(0)), k = int(state.range(1)), bits = int(state.range(2));
  const int tokens = int(state.range(3)), threads = int(state.range(4));
  const auto path = KernelPath(state.range(5));
  const auto arithmetic = ActivationArithmetic(state.range(6));
  if (!cpu_supports(path)) return state.SkipWithError("CPU lacks this kernel path");
  const PackedMatrix& m = packed(n, k, bits);
  const std::vector<float> x = random_floats(size_t(tokens) * k, 2);
  std::vector<float> y(size_t(tokens) * n);
  set_num_threads(threads);
  for (auto _ : state) {
    packed_matmul(m, x.data(), tokens, y.data(), path, arithmetic);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, double(m.weight_bytes()), threads);
}

// Same as BM_Packed for 4-bit 4096², but each call uses the next of 8 copies (72 MB > L3).
// Args: threads, act (0 fp32, 1 int8x3, 2 int8).
void BM_PackedGemvCold(benchmark::State& state) {
  const int threads = int(state.range(0));
  const auto arithmetic = ActivationArithmetic(state.range(1));
  constexpr int kCopies = 8, n = 4096, k = 4096;
  static std::vector<PackedMatrix> copies;
  if (copies.empty()) {
    const GridCodes q = random_weight(n, k, 4, 1);
    for (int i = 0; i < kCopies; ++i) copies.push_back(pack_matrix(q));
  }
  const std::vector<float> x = random_floats(k, 2);
  std::vector<float> y(n);
  set_num_threads(threads);
  const KernelPath path = active_kernel_path();
  int i = 0;
  for (auto _ : state) {
    packed_matmul(copies[i], x.data(), 1, y.data(), path, arithmetic);
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % kCopies;
  }
  set_counters(state, double(copies[0].weight_bytes()), threads);
}

// fp32 y = x Wᵀ through Eigen (its own threading is off; 2 threads take half of the rows each).
// Args: N, K, tokens, threads.
void BM_EigenFp32(benchmark::State& state) {
  const int n = int(state.range(0)), k = int(state.range(1)), tokens = int(state.range(2));
  const int threads = int(state.range(3));
  static std::map<std::pair<int, int>, Mat> weights;
  auto it = weights.find({n, k});
  if (it == weights.end()) {
    const std::vector<float> w = random_floats(size_t(n) * k, 3);
    it = weights.emplace(std::make_pair(n, k), Mat(Eigen::Map<const Mat>(w.data(), n, k))).first;
  }
  const Mat& w = it->second;
  const std::vector<float> xv = random_floats(size_t(tokens) * k, 2);
  const Eigen::Map<const Mat> x(xv.data(), tokens, k);
  Mat y(tokens, n);
  for (auto _ : state) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int part = 0; part < threads; ++part) {
      const int r0 = n / threads * part, rn = part + 1 == threads ? n - r0 : n / threads;
      y.middleCols(r0, rn).noalias() = x * w.middleRows(r0, rn).transpose();
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, double(n) * k * 4, threads);
}

// Memory read bandwidth in the same run (bench_bandwidth measures it in more detail).
void BM_MemoryRead1GiB(benchmark::State& state) {
  const int threads = int(state.range(0));
  constexpr size_t kBytes = size_t(1) << 30, kFloats = kBytes / sizeof(float);
  static float* data = [] {
    auto* p = static_cast<float*>(std::aligned_alloc(64, kBytes));
    std::memset(p, 0, kBytes);
    return p;
  }();
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (int t = 0; t < threads; ++t) total += ptq::bench::sum_range(data + kFloats / threads * t, kFloats / threads);
    benchmark::DoNotOptimize(total);
  }
  set_counters(state, double(kBytes), threads);
}

void packed_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "K", "bits", "tokens", "threads", "path", "act"});
  const int avx512 = int(KernelPath::avx512);
  for (int threads : {1, 2}) {
    // Path comparison on the headline shape, both arithmetics side by side.
    for (int act : {0, 1, 2})
      for (int path : {int(KernelPath::ref), int(KernelPath::avx2)}) b->Args({4096, 4096, 4, 1, threads, path, act});
    for (int bits : {4, 3})
      for (auto [n, k] : {std::pair{4096, 4096}, {11008, 4096}, {4096, 11008}})
        for (int tokens : {1, 8, 32})
          for (int act : {0, 1, 2}) b->Args({n, k, bits, tokens, threads, avx512, act});
  }
}

void eigen_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "K", "tokens", "threads"});
  for (int threads : {1, 2})
    for (auto [n, k] : {std::pair{4096, 4096}, {11008, 4096}, {4096, 11008}})
      for (int tokens : {1, 8, 32}) b->Args({n, k, tokens, threads});
}

BENCHMARK(BM_MemoryRead1GiB)->ArgName("threads")->Arg(1)->Arg(2)->Apply(best_of)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Packed)->Apply(packed_args)->Apply(best_of)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PackedGemvCold)->ArgNames({"threads", "act"})->ArgsProduct({{1, 2}, {0, 1, 2}})->Apply(best_of)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EigenFp32)->Apply(eigen_args)->Apply(best_of)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
