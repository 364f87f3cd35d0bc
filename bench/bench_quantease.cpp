// QuantEase on a 4096×4096 layer with synthetic correlated activations (all figures synthetic):
// the whole quantizer at 0, 1 and 30 sweeps (per sweep = (t30 − t0) / 30), next to one SGEMM of
// the same shape (N×K by K×K) and GPTQ's quantization step, in one run.
//   OMP_NUM_THREADS=2 ./bench_quantease --benchmark_repetitions=3
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <map>

#include "algorithms/gptq.h"
#include "algorithms/quantease.h"
#include "algorithms/synthetic_layer.h"

namespace {

using namespace ptq;

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

void BM_QuantEase(benchmark::State& state) {
  const int k = int(state.range(0));
  const Layer& l = layer(k);
  QuantEaseOptions o;
  o.grid.bits = 4;
  o.grid.group_size = 128;
  o.iters = int(state.range(1));
  for (auto _ : state) benchmark::DoNotOptimize(quantease_quantize(l.w, l.h, o, nullptr).grid.q.data());
  state.counters["sweeps"] = o.iters;
  state.counters["threads"] = omp_get_max_threads();
  state.SetLabel("w4 g128, init none");
}

void BM_Sgemm(benchmark::State& state) {
  const int k = int(state.range(0));
  const Mat a = layer(k).w, b = layer(k).h.cast<float>();
  Mat c(k, k);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k, k, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c.data(), k);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetLabel("one SGEMM N×K·K×K");
}

void BM_GptqStep(benchmark::State& state) {
  const int k = int(state.range(0));
  const Layer& l = layer(k);
  GptqOptions o;  // W4 g128
  GptqWorkspace ws;
  gptq_quantize(l.w, l.h, o, nullptr, &ws);
  for (auto _ : state) benchmark::DoNotOptimize(gptq_quantize(l.w, l.h, o, nullptr, &ws).q.data());
  state.SetLabel("gptq w4 g128 (warm workspace)");
}

BENCHMARK(BM_Sgemm)->Arg(4096)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime()->Iterations(3);
BENCHMARK(BM_QuantEase)->Args({4096, 0})->Args({4096, 1})->Args({4096, 30})
    ->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime()->Iterations(1);
BENCHMARK(BM_GptqStep)->Arg(4096)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime()->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
