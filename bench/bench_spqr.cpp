// SpQR against its baselines, each pair timed alternately in one loop so that both see the same
// machine load (all figures synthetic):
//   BM_GemvVsDense   the composed SpQR linear (w3 or w4, g16, fractional fp16 zeros, coded
//                    statistics, act-order g_idx, CSR at 1% density) against the dense 4-bit g128
//                    packed GEMV with integer zeros, K = N = 4096, 1 token; counters dense_us,
//                    spqr_us, ratio (wall) and ratio_cpu (calling thread's CPU time).
//   BM_StepVsGptq    spqr_quantize (defaults: w3 g16 qq3 qg16 outlier=0.2 act_order damp=1)
//                    against gptq_quantize (w4 g128), 4096×4096, synthetic correlated
//                    activations (algorithms/synthetic_layer.h); counters gptq_s, spqr_s, ratio.
//   OMP_NUM_THREADS=2 ./bench_spqr --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "algorithms/gptq.h"
#include "algorithms/spqr.h"
#include "algorithms/synthetic_layer.h"
#include "formats/kernels/packed_matmul.h"
#include "ptq/parallel.h"

namespace {

using namespace ptq;
using Clock = std::chrono::steady_clock;

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
void with_min(benchmark::internal::Benchmark* b) { b->ComputeStatistics("min", min_of); }

float uniform(std::mt19937_64& rng) { return float(double(rng() >> 11) / 9007199254740992.0); }
float fp16_exact(float v) { return f16_to_f32(f32_to_f16(v)); }

double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

GridCodes dense_grid(int n, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GridCodes q;
  q.rows = n;
  q.cols = k;
  q.grid.bits = 4;
  q.grid.group_size = 128;
  const int groups = q.grid.num_groups(k);
  q.q.resize(size_t(n) * k);
  for (auto& v : q.q) v = uint8_t(rng() & 15);
  q.scales = Mat::Constant(n, groups, 0.01f);
  q.zeros.resize(n, groups);
  for (Eigen::Index i = 0; i < q.zeros.size(); ++i) q.zeros.data()[i] = float(rng() & 15);
  q.g_idx.resize(k);
  for (int c = 0; c < k; ++c) q.g_idx[c] = c / 128;
  return q;
}

// A layer laid out as spqr_quantize lays it out: groups of 16 in a random column order,
// statistics decoded from 3-bit codes per 16 rows, fractional zeros, 1% outliers.
QuantizedLayer spqr_layer(int n, int k, int bits, uint64_t seed) {
  std::mt19937_64 rng(seed);
  QuantizedLayer l;
  GridCodes& q = l.grid;
  q.rows = n;
  q.cols = k;
  q.grid.bits = bits;
  q.grid.group_size = 16;
  const int groups = q.grid.num_groups(k);
  q.q.resize(size_t(n) * k);
  for (auto& v : q.q) v = uint8_t(rng() & uint64_t(q.grid.max_q()));
  std::vector<int> perm(k);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  q.g_idx.resize(k);
  for (int j = 0; j < k; ++j) q.g_idx[perm[j]] = j / 16;
  for (auto* coded : {&q.coded_scales, &q.coded_zeros}) {
    CodedStatistic c;
    c.bits = 3;
    c.row_block = 16;
    c.codes.resize(size_t(n) * groups);
    for (auto& v : c.codes) v = uint8_t(rng() & 7);
    c.scale2.resize((n + 15) / 16, groups);
    c.zero2.resize((n + 15) / 16, groups);
    const bool scales = coded == &q.coded_scales;
    for (Eigen::Index i = 0; i < c.scale2.size(); ++i) {
      c.scale2.data()[i] = fp16_exact(scales ? 0.002f : 0.5f * float(q.grid.max_q()) / 7.0f);
      c.zero2.data()[i] = fp16_exact(scales ? -1.5f : -0.25f - uniform(rng));
    }
    *coded = c;
  }
  q.scales.resize(n, groups);
  q.zeros.resize(n, groups);
  for (int r = 0; r < n; ++r)
    for (int g = 0; g < groups; ++g) {
      q.scales(r, g) = q.coded_scales->decode(r, g, groups);
      q.zeros(r, g) = q.coded_zeros->decode(r, g, groups);
    }
  SparseResidual s;
  s.row_offsets.push_back(0);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < k; ++c)
      if (uniform(rng) < 0.01f) {
        s.col_ids.push_back(c);
        s.values.push_back(fp16_exact(uniform(rng) - 0.5f));
      }
    s.row_offsets.push_back(int32_t(s.values.size()));
  }
  l.sparse = std::move(s);
  return l;
}

// Args: K (N = K), SpQR bits, threads.
void BM_GemvVsDense(benchmark::State& state) {
  const int k = int(state.range(0)), bits = int(state.range(1)), threads = int(state.range(2));
  set_num_threads(threads);
  static std::map<int, std::shared_ptr<const PackedLinear>> dense_cache, spqr_cache;
  auto& dense = dense_cache[k];
  if (!dense) dense = make_packed_linear(dense_grid(k, k, 1));
  auto& spqr = spqr_cache[k * 16 + bits];
  if (!spqr) spqr = make_composed_linear(spqr_layer(k, k, bits, 2));
  std::vector<float> x(k), y(k);
  std::mt19937_64 rng(3);
  for (auto& v : x) v = 2 * uniform(rng) - 1;
  constexpr int kCalls = 8;
  double dense_s = 0, spqr_s = 0, dense_cpu = 0, spqr_cpu = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    for (int i = 0; i < kCalls; ++i) dense->matmul(x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
    const auto t1 = Clock::now();
    const double c1 = thread_cpu_seconds();
    for (int i = 0; i < kCalls; ++i) spqr->matmul(x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
    const auto t2 = Clock::now();
    const double c2 = thread_cpu_seconds();
    dense_s += std::chrono::duration<double>(t1 - t0).count();
    spqr_s += std::chrono::duration<double>(t2 - t1).count();
    dense_cpu += c1 - c0;
    spqr_cpu += c2 - c1;
  }
  const double calls = double(state.iterations()) * kCalls;
  state.counters["dense_us"] = 1e6 * dense_s / calls;
  state.counters["spqr_us"] = 1e6 * spqr_s / calls;
  state.counters["ratio"] = spqr_s / dense_s;
  state.counters["ratio_cpu"] = spqr_cpu / dense_cpu;
  state.counters["threads"] = threads;
}
BENCHMARK(BM_GemvVsDense)
    ->ArgNames({"K", "bits", "threads"})
    ->Args({4096, 3, 1})
    ->Args({4096, 4, 1})
    ->Args({4096, 3, 2})
    ->Args({4096, 4, 2})
    ->Apply(with_min)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

struct Layer {
  Mat w;
  MatD h;
};

const Layer& layer(int k) {
  static std::map<int, Layer> cache;
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  synthetic_layer::Activations act(k, 64, 0.1f, 8, 25.0f, 1000 + k);
  InputStats s(k);
  for (int b = 0; b < 8; ++b) s.add_batch(act.sample(2048, 10 + b));
  return cache.emplace(k, Layer{synthetic_layer::weights(k, k, 2000 + k), s.hessian()}).first->second;
}

void BM_StepVsGptq(benchmark::State& state) {
  const int k = int(state.range(0));
  const Layer& l = layer(k);
  GptqOptions go;
  go.grid.bits = 4;
  go.grid.group_size = 128;
  GptqWorkspace ws;
  const SpqrOptions so;
  double gptq_s = 0, spqr_s = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    benchmark::DoNotOptimize(gptq_quantize(l.w, l.h, go, nullptr, &ws).q.data());
    const auto t1 = Clock::now();
    benchmark::DoNotOptimize(spqr_quantize(l.w, l.h, so, nullptr, &ws).grid.q.data());
    const auto t2 = Clock::now();
    gptq_s += std::chrono::duration<double>(t1 - t0).count();
    spqr_s += std::chrono::duration<double>(t2 - t1).count();
  }
  const double n = double(state.iterations());
  state.counters["gptq_s"] = gptq_s / n;
  state.counters["spqr_s"] = spqr_s / n;
  state.counters["ratio"] = spqr_s / gptq_s;
  state.counters["threads"] = omp_get_max_threads();
  state.SetLabel("gptq w4 g128 vs spqr w3 g16 qq3 qg16 outlier=0.2 act_order damp=1");
}
BENCHMARK(BM_StepVsGptq)->Arg(4096)->Apply(with_min)->UseRealTime()->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
