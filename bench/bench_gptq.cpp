// GPTQ on Llama-sized layers with synthetic correlated activations (low-rank mixing + noise +
// outlier channels, algorithms/synthetic_layer.h). Hessian accumulation and the quantization
// step are timed separately, next to one plain SSYRK / SGEMM of XᵀX on the same X so that
// ratios come from the same run. All figures are synthetic.
//   OMP_NUM_THREADS=2 ./bench_gptq --benchmark_filter='(Accumulate|Baseline)/4096/|Quantize/4096/4096/'
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <lapacke.h>

#include <chrono>
#include <map>
#include <memory>

#include "algorithms/gptq.h"
#include "algorithms/synthetic_layer.h"

namespace {

using namespace ptq;

constexpr int kCalibTokens = 16384;
constexpr int kHeldOutTokens = 2048;
constexpr int kBatch = 2048;

struct Inputs {
  std::unique_ptr<synthetic_layer::Activations> act;
  std::unique_ptr<InputStats> calib, held_out;
  std::unique_ptr<InputStats> calib_unfinalized;  // the accumulated state before hessian()
};

// Activations depend on K only; built once per K and shared by every benchmark.
const Inputs& inputs(int k) {
  static std::map<int, Inputs> cache;
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  Inputs in;
  in.act = std::make_unique<synthetic_layer::Activations>(k, 64, 0.1f, 8, 25.0f, 1000 + k);
  in.calib = std::make_unique<InputStats>(k);
  for (int b = 0; b < kCalibTokens / kBatch; ++b) in.calib->add_batch(in.act->sample(kBatch, 10 + b));
  in.calib_unfinalized = std::make_unique<InputStats>(*in.calib);
  in.held_out = std::make_unique<InputStats>(k);
  in.held_out->add_batch(in.act->sample(kHeldOutTokens, 999));
  return cache.emplace(k, std::move(in)).first->second;
}

// The streaming accumulation (InputStats over 8 batches of 2048 tokens) is the timed part; the
// one-off conversion to the full symmetric fp64 H that GPTQ reads (InputStats::hessian()) is
// timed separately and reported as the counter hessian_ms.
void BM_HessianAccumulate(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const Inputs& in = inputs(k);
  std::vector<Mat> batches;
  for (int b = 0; b < kCalibTokens / kBatch; ++b) batches.push_back(in.act->sample(kBatch, 10 + b));
  double hessian_ms = 0;
  for (auto _ : state) {
    InputStats s(k);
    for (const Mat& x : batches) s.add_batch(x);
    state.PauseTiming();
    const auto t0 = std::chrono::steady_clock::now();
    const MatD& h = s.hessian();
    hessian_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(h.data());
    state.ResumeTiming();
  }
  state.counters["tokens"] = kCalibTokens;
  state.counters["threads"] = omp_get_max_threads();
  state.counters["hessian_ms"] = hessian_ms;
}

// The floor for Hessian accumulation: one fp32 XᵀX over all tokens at once.
void BM_XtX_Baseline(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const bool gemm = state.range(1) != 0;
  Mat x(kCalibTokens, k);
  for (int b = 0; b < kCalibTokens / kBatch; ++b) x.middleRows(b * kBatch, kBatch) = inputs(k).act->sample(kBatch, 10 + b);
  Mat c(k, k);
  for (auto _ : state) {
    if (gemm)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, k, kCalibTokens, 1.0f, x.data(), k,
                  x.data(), k, 0.0f, c.data(), k);
    else
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, k, kCalibTokens, 1.0f, x.data(), k, 0.0f,
                  c.data(), k);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetLabel(gemm ? "sgemm" : "ssyrk");
}

void BM_GptqQuantize(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const Inputs& in = inputs(k);
  const Mat w = synthetic_layer::weights(n, k, 2000 + n);
  GptqOptions o;  // W4 g128 asym, block 128, damp 0.01
  o.act_order = state.range(2) != 0;
  const MatD h = in.calib->hessian();
  GridCodes q;
  QuantLog log;
  // Timed: a call whose workspace an earlier layer of the same shape has used, as in the
  // pipeline (the Gptq quantizer keeps one). cold_ms: the same call with a fresh workspace,
  // i.e. paying the factor's first-touch page faults.
  GptqWorkspace workspace;
  const auto c0 = std::chrono::steady_clock::now();
  gptq_quantize(w, h, o, &log);
  state.counters["cold_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
  gptq_quantize(w, h, o, &log, &workspace);
  for (auto _ : state) q = gptq_quantize(w, h, o, &log, &workspace);
  const Mat wq = q.dequantize();
  state.counters["calib_err"] = relative_output_error(w, wq, h);
  state.counters["heldout_err"] = relative_output_error(w, wq, in.held_out->hessian());
  state.counters["rtn_heldout_err"] =
      relative_output_error(w, make_quantizer(parse_spec("rtn(w4,g128)"))->quantize(w, nullptr, nullptr).grid.dequantize(),
                            in.held_out->hessian());
  state.counters["threads"] = omp_get_max_threads();
  state.SetLabel(o.act_order ? "w4 g128 asym act_order" : "w4 g128 asym");
}

// The factor GPTQ propagates errors with. Arg 1 picks the route: 0 = ours (R̂ from one tiled
// fp32 Cholesky of the reversed H), 1 = the reference's U by potrf → potri → potrf in fp32
// (what fasterquant runs through torch), on OpenBLAS's own threads.
void BM_UpdateFactor(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  MatD h = inputs(k).calib->hessian();
  h.diagonal().array() += 0.01 * h.diagonal().mean();
  const Mat hf = h.cast<float>();
  Mat u;
  for (auto _ : state) {
    if (state.range(1) == 0) {
      if (!gptq_update_factor(h, &u)) state.SkipWithError("Cholesky failed");
    } else {
      Mat a = hf;  // symmetric: the row-major lower triangle is the column-major upper one
      LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', k, a.data(), k);
      LAPACKE_spotri(LAPACK_COL_MAJOR, 'U', k, a.data(), k);
      for (int i = 0; i < k; ++i)
        for (int j = i + 1; j < k; ++j) a(i, j) = a(j, i);
      LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', k, a.data(), k);
      benchmark::DoNotOptimize(a.data());
    }
  }
  state.SetLabel(state.range(1) == 0 ? "ours: tiled fp32 potrf(reversed)" : "reference: spotrf+spotri+spotrf");
}

// One linear group as the pipeline quantizes it: three layers [N, K] reading one input (q/k/v),
// GPTQ W4 g128, each layer quantized and its output error measured. Arg 2 picks the pipeline:
//   0 = before (main at c5cf1f5): a new quantizer per layer (so GPTQ's workspace starts cold)
//       and the K×K H formed twice per layer (once for GPTQ, once for the error);
//   1 = now: one quantizer per spec for the whole job (warm workspace after the first layer)
//       and H formed once per group.
// Each iteration starts from the accumulated, not yet finalized statistics (copied untimed).
void BM_PipelineGroup(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const bool now = state.range(2) != 0;
  const Inputs& in = inputs(k);
  const Mat w[3] = {synthetic_layer::weights(n, k, 3000 + n), synthetic_layer::weights(n, k, 3001 + n),
                    synthetic_layer::weights(n, k, 3002 + n)};
  const Spec spec = parse_spec("gptq(w4,g128)");
  std::unique_ptr<WeightQuantizer> shared = make_quantizer(spec);
  shared->quantize(w[0], in.calib.get(), nullptr);  // an earlier group of the job warmed it
  double err = 0;
  for (auto _ : state) {
    state.PauseTiming();
    InputStats stats(*in.calib_unfinalized);
    state.ResumeTiming();
    for (const Mat& layer : w) {
      if (now) {
        const QuantizedLayer q = shared->quantize(layer, &stats, nullptr);
        err += relative_output_error(layer, q.stored_weight(), stats.hessian());
      } else {
        // The former InputStats::hessian() built a fresh [K, K] matrix on every call.
        const QuantizedLayer q = make_quantizer(spec)->quantize(layer, &stats, nullptr);
        InputStats again(*in.calib_unfinalized);
        err += relative_output_error(layer, q.stored_weight(), MatD(again.hessian()));
      }
      if (!now) stats = InputStats(*in.calib_unfinalized);  // the next layer forms H afresh
    }
  }
  benchmark::DoNotOptimize(err);
  state.counters["layers"] = 3;  // time per layer = time / 3
  state.counters["threads"] = omp_get_max_threads();
  state.SetLabel(now ? "now: shared quantizer, H once per group" : "before: quantizer per layer, H twice per layer");
}

BENCHMARK(BM_HessianAccumulate)->Arg(4096)->Arg(11008)->Iterations(1)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(BM_XtX_Baseline)->Args({4096, 0})->Args({4096, 1})->Args({11008, 0})->Iterations(1)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(BM_UpdateFactor)->Args({4096, 0})->Args({4096, 1})->Args({11008, 0})->Iterations(1)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
// Args: N, K, act_order.
BENCHMARK(BM_GptqQuantize)
    ->Args({4096, 4096, 0})->Args({4096, 4096, 1})
    ->Args({11008, 4096, 0})->Args({11008, 4096, 1})
    ->Args({4096, 11008, 0})->Args({4096, 11008, 1})
    ->Iterations(1)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
// Args: N, K, pipeline (0 before, 1 now).
BENCHMARK(BM_PipelineGroup)
    ->Args({4096, 4096, 0})->Args({4096, 4096, 1})
    ->Iterations(2)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
