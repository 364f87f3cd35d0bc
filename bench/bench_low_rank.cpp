// The low-rank fit of a layer's quantization error (lorc's whole cost per layer), synthetic
// weights and correlated activations (algorithms/synthetic_layer.h): exact (dgesdd of E·S) and
// randomized SVD, H-weighted, at SmolLM2-135M's shapes (N×K = 576×576, 1536×576, 576×1536) and
// 4096×4096, next to our GPTQ step on the same layer, in one run.
//   OMP_NUM_THREADS=2 ./bench_low_rank --benchmark_repetitions=3
// Args: N, K, rank, svd (0 exact, 1 randomized).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <benchmark/benchmark.h>
#include <omp.h>

#include <map>

#include "algorithms/gptq.h"
#include "algorithms/grid.h"
#include "algorithms/low_rank.h"
#include "algorithms/synthetic_layer.h"

namespace {

using namespace ptq;

struct Layer {
  Mat w;
  MatD h;
  MatD error;  // RTN w3 g64 error of w
};

const Layer& layer(int n, int k) {
  static std::map<std::pair<int, int>, Layer> cache;
  auto it = cache.find({n, k});
  if (it != cache.end()) return it->second;
  synthetic_layer::Activations act(k, 64, 0.1f, 8, 25.0f, 1000 + k);
  InputStats s(k);
  for (int b = 0; b < 4; ++b) s.add_batch(act.sample(2048, 10 + b));
  Layer l{synthetic_layer::weights(n, k, 2000 + n + k), s.hessian(), {}};
  QuantGrid g;
  g.bits = 3;
  g.group_size = 64;
  l.error = (l.w - grid::quantize_rtn(l.w, g).dequantize()).cast<double>();
  return cache.emplace(std::pair{n, k}, std::move(l)).first->second;
}

void BM_LowRankFit(benchmark::State& state) {
  const int n = int(state.range(0)), k = int(state.range(1));
  const Layer& l = layer(n, k);
  LowRankOptions o;
  o.rank = int(state.range(2));
  o.svd = state.range(3) ? LowRankSvd::kRandomized : LowRankSvd::kExact;
  for (auto _ : state) benchmark::DoNotOptimize(fit_low_rank(l.error, &l.h, o, nullptr).l1.data());
  state.counters["threads"] = omp_get_max_threads();
  state.SetLabel(state.range(3) ? "randomized" : "exact");
}

void BM_GptqStep(benchmark::State& state) {
  const int n = int(state.range(0)), k = int(state.range(1));
  const Layer& l = layer(n, k);
  GptqOptions o;
  o.grid.bits = 3;
  o.grid.group_size = 64;
  GptqWorkspace ws;
  gptq_quantize(l.w, l.h, o, nullptr, &ws);
  for (auto _ : state) benchmark::DoNotOptimize(gptq_quantize(l.w, l.h, o, nullptr, &ws).q.data());
  state.SetLabel("gptq w3 g64 (warm workspace)");
}

void shapes(benchmark::internal::Benchmark* b, bool with_rank) {
  for (auto [n, k] : {std::pair{576, 576}, {1536, 576}, {576, 1536}}) {
    if (with_rank) {
      b->Args({n, k, 32, 0});
      b->Args({n, k, 32, 1});
    } else {
      b->Args({n, k});
    }
  }
  if (with_rank) {
    for (int r : {16, 32, 64}) b->Args({4096, 4096, r, 1});
  } else {
    b->Args({4096, 4096});
  }
}

BENCHMARK(BM_LowRankFit)->Apply([](auto* b) { shapes(b, true); })->ArgNames({"N", "K", "rank", "svd"})
    ->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(BM_LowRankFit)->Args({4096, 4096, 32, 0})->ArgNames({"N", "K", "rank", "svd"})
    ->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime()->Iterations(1);
BENCHMARK(BM_GptqStep)->Apply([](auto* b) { shapes(b, false); })->ArgNames({"N", "K"})
    ->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
