// The composed linear's parts (formats/kernels/composed_kernels.h) against the dense 4-bit g128
// GEMV of the same shape, timed in the same loop so that both see the same machine load: each
// iteration runs the dense packed matmul kCallsPerBlock times, then the part as often (blocks,
// so that each stays as warm in the caches as it would alone). The reported time is that of one
// iteration (both blocks); the counters give the dense and the part's wall time per call
// (dense_us, part_us), their ratio part / dense, and the ratio of the calling thread's CPU times
// (ratio_cpu: at 1 thread all the work, and not inflated by the other jobs on the shared
// cores); median and min over --benchmark_repetitions. Synthetic weights: random 4-bit codes with integer zero points,
// g128; CSR values at a uniform 1% density; low-rank factors Gaussian, fp16-exact. The kernel
// path and arithmetic are the defaults (best path, int8x3), chosen once when a linear is built.
//   ./bench_composed --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Parts:
//   fwht        the Hadamard input transform of x [tokens, K] (factors 4096, or 128·12 for 1536)
//   csr         CSR add at 1% density
//   low_rank    the rank-r branch (x·L2ᵀ)·L1ᵀ
//   composed    the whole composed matmul (grid + rank-r branch, or with all=1 also the Hadamard
//               transform and the 1% CSR) vs the grid-only linear: the ratio is the overhead
// BM_GridActVsDense: the same grid-only linear's matmul_quantized (W4A8 / W4A4: per-token
// activations on an abits grid, symmetric or asym, multiplied as integers on the int8 kernels)
// vs its matmul (W4A16: the default int8x3 arithmetic), same loop, same counters; x uniform.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "formats/kernels/composed_kernels.h"
#include "formats/kernels/kernels.h"
#include "formats/kernels/packed_matmul.h"
#include "ptq/parallel.h"

namespace {

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
void with_min(benchmark::internal::Benchmark* b) { b->ComputeStatistics("min", min_of); }

using namespace ptq;
using namespace ptq::kernels;

float uniform(std::mt19937_64& rng) { return float(double(rng() >> 11) / 9007199254740992.0); }
float fp16_exact(float v) { return f16_to_f32(f32_to_f16(v)); }

GridCodes random_grid(int n, int k, uint64_t seed) {
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

SparseResidual random_sparse(int n, int k, double density, uint64_t seed) {
  std::mt19937_64 rng(seed);
  SparseResidual s;
  s.row_offsets.push_back(0);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < k; ++c)
      if (uniform(rng) < density) {
        s.col_ids.push_back(c);
        s.values.push_back(fp16_exact(uniform(rng) - 0.5f));
      }
    s.row_offsets.push_back(int32_t(s.values.size()));
  }
  return s;
}

LowRankBranch random_low_rank(int n, int k, int rank, uint64_t seed) {
  std::mt19937_64 rng(seed);
  LowRankBranch l;
  l.l1.resize(n, rank);
  l.l2.resize(rank, k);
  for (Eigen::Index i = 0; i < l.l1.size(); ++i) l.l1.data()[i] = fp16_exact(0.02f * (uniform(rng) - 0.5f));
  for (Eigen::Index i = 0; i < l.l2.size(); ++i) l.l2.data()[i] = fp16_exact(0.02f * (uniform(rng) - 0.5f));
  return l;
}

InputTransform hadamard(int k, uint64_t seed) {
  InputTransform t;
  t.kind = InputTransform::Kind::kHadamard;
  t.size = k;
  t.factors = hadamard_factors(k);
  std::mt19937_64 rng(seed);
  t.signs.resize(k);
  for (auto& s : t.signs) s = (rng() & 1) ? 1 : -1;
  return t;
}

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (auto& e : v) e = 2.0f * uniform(rng) - 1.0f;
  return v;
}

// Layouts are built once per shape and reused by every repetition.
template <class T, class Key, class Make>
const T& cached(std::map<Key, T>& cache, const Key& key, Make make) {
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make()).first;
  return it->second;
}

const GridCodes& grid_of(int k) {
  static std::map<int, GridCodes> cache;
  return cached(cache, k, [&] { return random_grid(k, k, 1); });
}
const std::shared_ptr<const PackedLinear>& dense_of(int k) {
  static std::map<int, std::shared_ptr<const PackedLinear>> cache;
  return cached(cache, k, [&] { return make_packed_linear(grid_of(k)); });
}
const PackedTransform& transform_of(int k) {
  static std::map<int, PackedTransform> cache;
  return cached(cache, k, [&] { return pack_transform("bench", hadamard(k, 3), k); });
}
const SparseResidual& sparse_of(int k) {
  static std::map<int, SparseResidual> cache;
  return cached(cache, k, [&] { return random_sparse(k, k, 0.01, 4); });
}
const LowRankBranch& low_rank_of(int k, int rank) {
  static std::map<std::pair<int, int>, LowRankBranch> cache;
  return cached(cache, std::pair{k, rank}, [&] { return random_low_rank(k, k, rank, 5); });
}
const std::shared_ptr<const PackedLinear>& composed_of(int k, int rank, bool all) {
  static std::map<std::tuple<int, int, bool>, std::shared_ptr<const PackedLinear>> cache;
  return cached(cache, std::tuple{k, rank, all}, [&] {
    QuantizedLayer layer = QuantizedLayer::from_grid(grid_of(k));
    if (rank > 0) layer.low_rank = low_rank_of(k, rank);
    if (all) {
      layer.sparse = sparse_of(k);
      layer.input_transform = hadamard(k, 3);
    }
    return make_composed_linear(layer);
  });
}

using Clock = std::chrono::steady_clock;

constexpr int kCallsPerBlock = 8;

// CPU time of the calling thread: at 1 thread all the work, and unlike wall time blind to the
// other jobs that share this machine's cores.
double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Runs blocks of `dense` and `part` calls alternately.
template <class Dense, class Part>
void side_by_side(benchmark::State& state, Dense dense, Part part) {
  double dense_s = 0, part_s = 0, dense_cpu = 0, part_cpu = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    for (int i = 0; i < kCallsPerBlock; ++i) dense();
    const auto t1 = Clock::now();
    const double c1 = thread_cpu_seconds();
    for (int i = 0; i < kCallsPerBlock; ++i) part();
    const auto t2 = Clock::now();
    const double c2 = thread_cpu_seconds();
    dense_s += std::chrono::duration<double>(t1 - t0).count();
    const double p = std::chrono::duration<double>(t2 - t1).count();
    part_s += p;
    dense_cpu += c1 - c0;
    part_cpu += c2 - c1;
  }
  const double calls = double(state.iterations()) * kCallsPerBlock;
  state.counters["dense_us"] = 1e6 * dense_s / calls;
  state.counters["part_us"] = 1e6 * part_s / calls;
  state.counters["ratio"] = part_s / dense_s;
  state.counters["ratio_cpu"] = part_cpu / dense_cpu;  // the calling thread's CPU time (1 thread: all of it)
}

enum PartKind { kFwht = 0, kCsr = 1, kLowRank = 2, kComposed = 3 };

// Args: part (0 fwht, 1 csr, 2 low_rank, 3 composed), K (N = K), tokens, threads, rank, all.
void BM_PartVsDense(benchmark::State& state) {
  const auto kind = PartKind(state.range(0));
  const int k = int(state.range(1)), n = k, tokens = int(state.range(2)), threads = int(state.range(3));
  const int rank = int(state.range(4));
  const bool all = state.range(5) != 0;
  set_num_threads(threads);
  const auto& dense = dense_of(k);
  const ComposedKernels kernels = composed_kernels(active_kernel_path());
  const std::vector<float> x = random_floats(size_t(tokens) * k, 2);
  std::vector<float> y(size_t(tokens) * n), out(size_t(tokens) * std::max(n, k));
  auto run_dense = [&] {
    dense->matmul(x.data(), tokens, y.data());
    benchmark::DoNotOptimize(y.data());
  };
  switch (kind) {
    case kFwht: {
      const PackedTransform& t = transform_of(k);
      side_by_side(state, run_dense, [&] {
        transform_input(t, kernels, x.data(), tokens, out.data());
        benchmark::DoNotOptimize(out.data());
      });
      break;
    }
    case kCsr: {
      const PackedSparse s = pack_sparse("bench", sparse_of(k), n, k);
      side_by_side(state, run_dense, [&] {
        sparse_add(s, kernels, x.data(), tokens, out.data());
        benchmark::DoNotOptimize(out.data());
      });
      break;
    }
    case kLowRank: {
      const PackedLowRank l = pack_low_rank("bench", low_rank_of(k, rank), n, k);
      side_by_side(state, run_dense, [&] {
        low_rank_add(l, kernels, x.data(), tokens, out.data());
        benchmark::DoNotOptimize(out.data());
      });
      break;
    }
    case kComposed: {
      const auto& composed = composed_of(k, rank, all);
      side_by_side(state, run_dense, [&] {
        composed->matmul(x.data(), tokens, out.data());
        benchmark::DoNotOptimize(out.data());
      });
      break;
    }
  }
  state.counters["threads"] = threads;
}

void part_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"part", "K", "tokens", "threads", "rank", "all"});
  for (int threads : {1, 2})
    for (int tokens : {1, 16}) {
      b->Args({kFwht, 4096, tokens, threads, 0, 0});
      b->Args({kFwht, 1536, tokens, threads, 0, 0});
      b->Args({kCsr, 4096, tokens, threads, 0, 0});
      b->Args({kLowRank, 4096, tokens, threads, 32, 0});
      for (int rank : {16, 32, 64}) b->Args({kComposed, 4096, tokens, threads, rank, 0});
      b->Args({kComposed, 4096, tokens, threads, 32, 1});
    }
}

// Args: K (N = K), tokens, threads, abits, asym.
void BM_GridActVsDense(benchmark::State& state) {
  const int k = int(state.range(0)), n = k, tokens = int(state.range(1)), threads = int(state.range(2));
  const ActivationQuant a{int(state.range(3)), state.range(4) != 0, 1.0};
  set_num_threads(threads);
  const auto& dense = dense_of(k);
  const std::vector<float> x = random_floats(size_t(tokens) * k, 2);
  std::vector<float> y(size_t(tokens) * n), out(size_t(tokens) * n);
  side_by_side(
      state,
      [&] {
        dense->matmul(x.data(), tokens, y.data());
        benchmark::DoNotOptimize(y.data());
      },
      [&] {
        dense->matmul_quantized(x.data(), tokens, a, out.data());
        benchmark::DoNotOptimize(out.data());
      });
  state.counters["threads"] = threads;
}

void grid_act_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"K", "tokens", "threads", "abits", "asym"});
  for (int threads : {1, 2})
    for (int tokens : {1, 16, 64}) {
      b->Args({4096, tokens, threads, 8, 0});
      b->Args({4096, tokens, threads, 8, 1});
      b->Args({4096, tokens, threads, 4, 0});
    }
}

BENCHMARK(BM_GridActVsDense)->Apply(grid_act_args)->Apply(with_min)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PartVsDense)->Apply(part_args)->Apply(with_min)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
