// Forward-pass throughput (tokens/s) of the fp32 Llama forward: the real stories260K model and a
// synthetic Llama (hidden 1024, 8 layers; synthetic weights, labelled so in every report).
// Sequences run in parallel across threads, as `ptq eval` runs them.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "ptq/eval.h"
#include "ptq/generate.h"
#include "formats/loaded_model.h"
#include "ptq/parallel.h"
#include "support/synthetic.h"

namespace {

std::string shared_model(const char* rel) {
  const char* env = std::getenv("PTQ_SHARED_DIR");
  std::filesystem::path p = std::filesystem::path(env && *env ? env : "../shared") / rel;
  return std::filesystem::exists(p) ? p.string() : "";
}

std::string synthetic_1024() {
  static std::string dir;
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() / "ptq_bench_synthetic_1024").string();
    ptq::synthetic::LlamaShape s;
    s.hidden = 1024;
    s.layers = 8;
    s.heads = 16;
    s.kv_heads = 8;
    s.ffn = 2816;
    s.vocab = 4096;
    s.seed = 1;
    std::filesystem::create_directories(dir);
    ptq::synthetic::write_llama(dir, s);
  }
  return dir;
}

std::vector<std::vector<int32_t>> random_sequences(int count, int len, int vocab) {
  std::mt19937_64 rng(42);
  std::vector<std::vector<int32_t>> seqs(count, std::vector<int32_t>(len));
  for (auto& s : seqs)
    for (auto& t : s) t = int32_t(rng() % uint64_t(vocab));
  return seqs;
}

// state.range(0): threads; range(1): sequences per batch; range(2): tokens per sequence.
void run_forward(benchmark::State& state, const std::string& path) {
  if (path.empty()) {
    state.SkipWithError("model not found (set PTQ_SHARED_DIR)");
    return;
  }
  ptq::set_num_threads(int(state.range(0)));
  ptq::LoadedModel lm = ptq::load_model_for_inference(path);
  auto seqs = random_sequences(int(state.range(1)), int(state.range(2)), lm.model.config().vocab_size);
  for (auto _ : state) {
    auto r = ptq::evaluate_perplexity([&](const auto& ids) { return lm.forward->logits(ids); }, seqs);
    benchmark::DoNotOptimize(r.nll_sum);
  }
  const double tokens = double(state.range(1) * state.range(2));
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = double(state.range(0));
}

void BM_ForwardStories260K(benchmark::State& state) {
  run_forward(state, shared_model("models/stories260K/hf"));
}
void BM_ForwardSynthetic1024x8(benchmark::State& state) { run_forward(state, synthetic_1024()); }

// Greedy decoding of range(1) tokens after a 16-token prompt on the synthetic 1024 x 8 Llama,
// 1 thread: range(0) 1 = `generate` (KV cache), 0 = the former loop that reran the whole prefix
// through logits() for every new token. Same run, same tokens.
void BM_GreedyDecodeSynthetic1024x8(benchmark::State& state) {
  const bool cached = state.range(0) != 0;
  const int new_tokens = int(state.range(1));
  ptq::set_num_threads(1);
  ptq::LoadedModel lm = ptq::load_model_for_inference(synthetic_1024());
  const std::vector<int32_t> prompt = random_sequences(1, 16, lm.model.config().vocab_size)[0];
  ptq::SamplingOptions o;
  o.max_tokens = new_tokens;
  o.stop_at_eos = false;
  std::vector<int32_t> out;
  for (auto _ : state) {
    if (cached) {
      out = ptq::generate(*lm.forward, prompt, o, -1);
    } else {
      out = prompt;
      for (int i = 0; i < new_tokens; ++i) {
        const ptq::Mat logits = lm.forward->logits(out);
        Eigen::Index best = 0;
        logits.row(logits.rows() - 1).maxCoeff(&best);
        out.push_back(int32_t(best));
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["tokens/s"] = benchmark::Counter(double(new_tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(cached ? "generate (KV cache)" : "prefix rerun per token (before)");
}

BENCHMARK(BM_GreedyDecodeSynthetic1024x8)
    ->ArgNames({"cached", "tokens"})
    ->Args({0, 64})->Args({1, 64})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK(BM_ForwardStories260K)
    ->ArgNames({"threads", "seqs", "len"})
    ->Args({1, 8, 256})->Args({2, 8, 256})->Args({1, 1, 256})->Args({2, 1, 256})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ForwardSynthetic1024x8)
    ->ArgNames({"threads", "seqs", "len"})
    ->Args({1, 4, 256})->Args({2, 4, 256})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
