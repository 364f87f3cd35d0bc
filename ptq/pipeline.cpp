#include "ptq/pipeline.h"

#include <chrono>
#include <map>

#include "ptq/block_runner.h"
#include "ptq/error.h"
#include "ptq/progress.h"

namespace ptq {
namespace {

using Clock = std::chrono::steady_clock;

Spec with_arg(Spec s, const std::string& key, int value) {
  for (auto& a : s.args) {
    if (a.key == key) {
      a.value = std::to_string(value);
      return s;
    }
  }
  s.args.push_back({key, std::to_string(value)});
  return s;
}


double bits_per_weight(const QuantizedWeight& q) {
  // Codes, plus an fp16 scale and (asymmetric) an integer zero of `bits` bits per group.
  double per_group = 16.0 + (q.grid.sym ? 0.0 : double(q.grid.bits));
  return double(q.grid.bits) + per_group * double(q.scales.cols()) / double(q.cols);
}

LayerResult quantize_one(const std::string& name, int layer, Mat& w, const InputStats& stats,
                         const PipelineOptions& o, const LayerSink& sink) {
  LayerResult r;
  r.name = name;
  r.layer = layer;
  r.rows = int(w.rows());
  r.cols = int(w.cols());
  std::unique_ptr<WeightQuantizer> quantizer = layer_quantizer(name, o);
  if (!quantizer) {
    r.skipped = true;
    r.spec = "skip";
    r.bits_per_weight = 32;
    sink(r, nullptr);
    return r;
  }
  r.spec = quantizer->spec();
  auto t0 = Clock::now();
  QuantLog log;
  QuantizedWeight q = quantizer->quantize(w, quantizer->needs_stats() ? &stats : nullptr, &log);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  Mat w_hat = q.dequantize();
  r.rel_error = relative_output_error(w, w_hat, stats.hessian());
  r.bits_per_weight = bits_per_weight(q);
  r.log = log.messages;
  w = std::move(w_hat);
  sink(r, &q);
  return r;
}

}  // namespace

std::unique_ptr<WeightQuantizer> layer_quantizer(const std::string& name, const PipelineOptions& o) {
  PTQ_ASSERT(!o.recipe.empty(), "the recipe has no stage");
  Spec spec = o.recipe.back();
  for (const auto& ov : o.overrides) {
    if (!std::regex_search(name, std::regex(ov.pattern))) continue;
    if (ov.skip) return nullptr;
    if (ov.bits) spec = with_arg(spec, "w", *ov.bits);
    if (ov.group_size) spec = with_arg(spec, "g", *ov.group_size);
  }
  return make_quantizer(spec);
}

std::vector<std::string> linear_layer_names(const ModelConfig& cfg) {
  std::vector<std::string> names;
  for (int l = 0; l < cfg.num_layers; ++l)
    for (int g = 0; g < kNumLinearInputs; ++g)
      for (const auto& c : linear_consumers(l, LinearInput(g))) names.push_back(c);
  return names;
}

std::vector<LayerResult> quantize_sequential(const Model& model, const CalibrationSet& calib,
                                             const PipelineOptions& o, const LayerSink& sink) {
  const ModelConfig& cfg = model.config();
  BlockActivations acts(cfg, HeadWeights::load(model), calib.windows);
  std::vector<LayerResult> results;
  Progress bar("quantize", size_t(cfg.num_layers), o.quiet);
  const std::vector<std::vector<int>> stages =
      o.true_sequential ? std::vector<std::vector<int>>{{0}, {1}, {2}, {3}}
                        : std::vector<std::vector<int>>{{0, 1, 2, 3}};
  for (int l = 0; l < cfg.num_layers; ++l) {
    BlockWeights w = BlockWeights::load(model, l);
    for (const auto& stage : stages) {
      std::array<bool, kNumLinearInputs> want{};
      std::map<int, InputStats> stats;
      const int widths[kNumLinearInputs] = {cfg.hidden_size, cfg.num_heads * cfg.head_dim,
                                            cfg.hidden_size, cfg.intermediate_size};
      for (int g : stage) {
        want[g] = true;
        stats.emplace(g, InputStats(widths[g]));
      }
      // Inputs come from the block as quantized so far (earlier stages already replaced).
      acts.run(w, want, [&](LinearInput g, size_t, const Mat& x) { stats.at(int(g)).add_batch(x); },
               false);
      for (int g : stage) {
        for (const auto& name : linear_short_names(LinearInput(g))) {
          Mat& weight = w.linear(name)->w;
          results.push_back(quantize_one(layer_prefix(l) + name, l, weight, stats.at(g), o, sink));
        }
      }
    }
    acts.run(w, {}, {}, true);
    bar.update(size_t(l) + 1);
  }
  return results;
}

std::vector<LayerResult> quantize_independent(const Model& model, const ActivationFile& acts,
                                              const PipelineOptions& o, const LayerSink& sink) {
  const ModelConfig& cfg = model.config();
  acts.check_fits(cfg);
  std::vector<LayerResult> results;
  Progress bar("quantize", size_t(cfg.num_layers), o.quiet);
  for (int l = 0; l < cfg.num_layers; ++l) {
    // Layers that read the same dataset (q/k/v, gate/up) share one InputStats.
    std::map<std::string, InputStats> stats;
    for (int g = 0; g < kNumLinearInputs; ++g) {
      for (const auto& name : linear_consumers(l, LinearInput(g))) {
        std::string ds = acts.find_input(name);
        if (ds.empty())
          throw Error("activation file has no input for '" + name +
                      "' (no dataset lists it in its `consumers` attribute)");
        auto it = stats.find(ds);
        if (it == stats.end()) {
          it = stats.emplace(ds, InputStats(int(acts.cols(ds)))).first;
          const int64_t rows = acts.rows(ds), chunk = 4096;
          for (int64_t b = 0; b < rows; b += chunk)
            it->second.add_batch(acts.read_rows(ds, b, std::min(chunk, rows - b)));
        }
        Mat w = model.weight(name + ".weight");
        results.push_back(quantize_one(name, l, w, it->second, o, sink));
      }
    }
    bar.update(size_t(l) + 1);
  }
  return results;
}

}  // namespace ptq
