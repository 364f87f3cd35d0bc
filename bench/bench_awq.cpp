// AWQ's scale and clip searches (algorithms/awq_search.h) on Llama-sized layers with synthetic
// correlated activations (low-rank mixing + noise + 8 outlier channels, synthetic_layer.h):
// 4096 search tokens, W4 g128, α grid 20, clip grid 20 down to 0.55. Each benchmark reports
// the relative output error ‖X ΔWᵀ‖²/‖X Wᵀ‖² on 2048 held-out tokens beside its time, with
// RTN's error from the same run. BM_ScaleSearchFullObjective is the same scale search with the
// exact objective tr(ΔW H ΔWᵀ) (N·K² per candidate): the side-by-side baseline for the
// block-diagonal objective's speed and for whether it picks the same α.
//   OMP_NUM_THREADS=2 ./bench_awq --benchmark_filter='/4096/4096'
// PTQ_AWQ_DUMP=<dir> also writes the 4096×4096 layer and its tokens as raw row-major float32
// (w.bin [N,K], x_calib.bin [4096,K], x_heldout.bin [2048,K]) for an external reference run.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>

#include "algorithms/awq_search.h"
#include "algorithms/grid.h"
#include "algorithms/synthetic_layer.h"

namespace {

using namespace ptq;

constexpr int kSearchTokens = 4096;
constexpr int kHeldOutTokens = 2048;
constexpr int kGrid = 20;
const QuantGrid kW4G128{4, 128, false, false};

struct Inputs {
  Mat calib_x, held_out_x;
  std::unique_ptr<InputStats> calib;
};

const Inputs& inputs(int k) {
  static std::map<int, Inputs> cache;
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  synthetic_layer::Activations act(k, 64, 0.1f, 8, 25.0f, 1000 + k);
  Inputs in;
  in.calib_x = act.sample(kSearchTokens, 10);
  in.held_out_x = act.sample(kHeldOutTokens, 999);
  in.calib = std::make_unique<InputStats>(k);
  in.calib->add_batch(in.calib_x);
  return cache.emplace(k, std::move(in)).first->second;
}

const Mat& weights(int n, int k) {
  static std::map<std::pair<int, int>, Mat> cache;
  auto it = cache.find({n, k});
  if (it == cache.end()) it = cache.emplace(std::make_pair(n, k), synthetic_layer::weights(n, k, 77 + n + k)).first;
  return it->second;
}

// ‖X (W − Ŵ)ᵀ‖² / ‖X Wᵀ‖² on the held-out tokens (fp32 GEMM, fp64 sums).
double held_out_error(const Mat& w, const Mat& w_hat, int k) {
  const Mat& x = inputs(k).held_out_x;
  const Mat d = w - w_hat;
  Mat y(x.rows(), w.rows()), e(x.rows(), w.rows());
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(x.rows()), int(w.rows()), k, 1.0f, x.data(), k,
              w.data(), k, 0.0f, y.data(), int(w.rows()));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(x.rows()), int(w.rows()), k, 1.0f, x.data(), k,
              d.data(), k, 0.0f, e.data(), int(w.rows()));
  return e.cast<double>().squaredNorm() / y.cast<double>().squaredNorm();
}

void write_raw(const std::string& path, const Mat& m) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(m.data()), std::streamsize(m.size() * sizeof(float)));
}

void maybe_dump(int n, int k) {
  const char* dir = std::getenv("PTQ_AWQ_DUMP");
  if (!dir || n != 4096 || k != 4096) return;
  write_raw(std::string(dir) + "/w.bin", weights(n, k));
  write_raw(std::string(dir) + "/x_calib.bin", inputs(k).calib_x);
  write_raw(std::string(dir) + "/x_heldout.bin", inputs(k).held_out_x);
}

void common_counters(benchmark::State& state, int n, int k) {
  state.counters["tokens"] = kSearchTokens;
  state.counters["threads"] = omp_get_max_threads();
  state.counters["err_rtn"] = held_out_error(weights(n, k), awq::fake_quantize_scaled(weights(n, k), Vec(), kW4G128), k);
}

void BM_ScaleSearch(benchmark::State& state) {
  const int n = int(state.range(0)), k = int(state.range(1));
  const Mat& w = weights(n, k);
  const InputStats& stats = *inputs(k).calib;  // built outside the timed loop
  maybe_dump(n, k);
  awq::ScaleSearch s;
  for (auto _ : state) s = awq::search_scales({&w}, stats, kW4G128, kGrid);
  common_counters(state, n, k);
  state.counters["alpha"] = s.alpha;
  state.counters["err_awq_scale"] = held_out_error(w, awq::fake_quantize_scaled(w, s.scales, kW4G128), k);
}

// The same search with the exact objective: N·K² per candidate through SSYMM.
awq::ScaleSearch full_objective_scale_search(const Mat& w, const InputStats& stats) {
  const int n = int(w.rows()), k = int(w.cols());
  const Mat h = stats.hessian().cast<float>();
  awq::ScaleSearch out;
  double best = 1e300;
  Mat dh(n, k);
  for (int i = 0; i < kGrid; ++i) {
    const Vec s = awq::scales_for_alpha(stats.mean_abs(), double(i) / kGrid);
    const Mat d = w - awq::fake_quantize_scaled(w, s, kW4G128);
    cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, n, k, 1.0f, h.data(), k, d.data(), k, 0.0f, dh.data(), k);
    const double e = dh.cwiseProduct(d).cast<double>().sum();
    out.errors.push_back(e);
    if (e < best) best = e, out.alpha = double(i) / kGrid, out.scales = s;
  }
  return out;
}

void BM_ScaleSearchFullObjective(benchmark::State& state) {
  const int n = int(state.range(0)), k = int(state.range(1));
  const Mat& w = weights(n, k);
  const InputStats& stats = *inputs(k).calib;
  awq::ScaleSearch s;
  for (auto _ : state) s = full_objective_scale_search(w, stats);
  common_counters(state, n, k);
  state.counters["alpha"] = s.alpha;
  state.counters["err_awq_scale"] = held_out_error(w, awq::fake_quantize_scaled(w, s.scales, kW4G128), k);
}

// Clip search on the scaled layer (as the transform runs it): W·diag(s) with stats of x / s.
void BM_ClipSearch(benchmark::State& state) {
  const int n = int(state.range(0)), k = int(state.range(1));
  const Mat& w = weights(n, k);
  const awq::ScaleSearch s = awq::search_scales({&w}, *inputs(k).calib, kW4G128, kGrid);
  Mat ws = w * s.scales.asDiagonal();
  InputStats scaled = *inputs(k).calib;
  scaled.scale_channels(s.scales.cast<double>().cwiseInverse());
  Mat max_val;
  for (auto _ : state) max_val = awq::search_clip(ws, scaled, kW4G128, kGrid, 0.5);
  awq::apply_clip(ws, max_val, kW4G128);
  const Mat effective = awq::fake_quantize_scaled(ws, Vec(), kW4G128) * s.scales.cwiseInverse().asDiagonal();
  common_counters(state, n, k);
  state.counters["alpha"] = s.alpha;
  state.counters["err_awq_scale"] = held_out_error(w, awq::fake_quantize_scaled(w, s.scales, kW4G128), k);
  state.counters["err_awq_scale_clip"] = held_out_error(w, effective, k);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 4096})->Args({11008, 4096})->Args({4096, 11008});
  b->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_ScaleSearch)->Apply(Shapes);
BENCHMARK(BM_ClipSearch)->Apply(Shapes);
BENCHMARK(BM_ScaleSearchFullObjective)->Args({4096, 4096})->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

BENCHMARK_MAIN();
