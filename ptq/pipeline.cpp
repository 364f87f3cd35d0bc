#include "ptq/pipeline.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "algorithms/transform.h"
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


double bits_per_weight(const GridCodes& q) {
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
  GridCodes q;
  try {
    q = quantizer->quantize(w, quantizer->needs_stats() ? &stats : nullptr, &log);
  } catch (const Error& e) {
    throw Error(name + ": " + e.what());  // the quantizer sees a matrix; the user knows the layer
  }
  // Weights near float's limit make the grid's range overflow; nothing downstream can use that.
  if (!all_finite(q.scales.data(), size_t(q.scales.size())) || !all_finite(q.zeros.data(), size_t(q.zeros.size())))
    throw Error(name + ": " + r.spec + " gave a non-finite scale or zero point: the weights' range (max |w| = " +
                std::to_string(w.cwiseAbs().maxCoeff()) + ") overflows float32");
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

namespace {

using StatsMap = std::map<int, InputStats>;
// Fills `stats` with the statistics of the inputs in `want` for the block as it is now.
using StatsRefresh =
    std::function<void(const BlockWeights&, const std::array<bool, kNumLinearInputs>&, StatsMap&)>;

std::vector<std::unique_ptr<WeightTransform>> make_transforms(const PipelineOptions& o) {
  std::vector<std::unique_ptr<WeightTransform>> out;
  for (size_t i = 0; i + 1 < o.recipe.size(); ++i) out.push_back(make_transform(o.recipe[i]));
  return out;
}

// Runs every transform stage on each linear group of block `l`, in block order, on the fp block.
// Returns the transforms' log messages keyed by the first layer of each group.
std::map<std::string, std::vector<std::string>> transform_block(
    int l, BlockWeights& w, StatsMap& stats, const PipelineOptions& o,
    const std::vector<std::unique_ptr<WeightTransform>>& transforms, const TensorSink& tensor_sink) {
  std::map<std::string, std::vector<std::string>> logs;
  for (int g = 0; g < kNumLinearInputs; ++g) {
    GroupContext ctx;
    ctx.input_name = layer_prefix(l) + linear_input_name(LinearInput(g));
    for (const auto& name : linear_short_names(LinearInput(g))) {
      ctx.names.push_back(layer_prefix(l) + name);
      ctx.layers.push_back(w.linear(name));
    }
    ctx.prev_norm = g == int(LinearInput::kQKV)      ? &w.attn_norm
                    : g == int(LinearInput::kGateUp) ? &w.ffn_norm
                                                     : nullptr;
    ctx.prev_linear = g == int(LinearInput::kO)      ? &w.v
                      : g == int(LinearInput::kDown) ? &w.up
                                                     : nullptr;
    ctx.stats = &stats.at(g);
    std::unique_ptr<WeightQuantizer> quantizer = layer_quantizer(ctx.names[0], o);
    if (!quantizer) continue;  // a skipped group stays exactly as it was
    ctx.quantizer = quantizer.get();
    QuantLog log;
    for (const auto& t : transforms) t->apply(ctx, &log);
    logs[ctx.names[0]] = log.messages;
  }
  if (tensor_sink) {
    tensor_sink(layer_prefix(l) + "input_layernorm.weight", w.attn_norm);
    tensor_sink(layer_prefix(l) + "post_attention_layernorm.weight", w.ffn_norm);
  }
  return logs;
}

void process_block(int l, BlockWeights& w, const StatsRefresh& refresh, const PipelineOptions& o,
                   const LayerSink& sink, const TensorSink& tensor_sink,
                   std::vector<LayerResult>& results) {
  auto transforms = make_transforms(o);
  StatsMap stats;
  std::map<std::string, std::vector<std::string>> transform_logs;
  if (!transforms.empty()) {
    refresh(w, {true, true, true, true}, stats);
    transform_logs = transform_block(l, w, stats, o, transforms, tensor_sink);
  }
  const std::vector<std::vector<int>> stages =
      o.true_sequential ? std::vector<std::vector<int>>{{0}, {1}, {2}, {3}}
                        : std::vector<std::vector<int>>{{0, 1, 2, 3}};
  for (const auto& stage : stages) {
    std::array<bool, kNumLinearInputs> want{};
    for (int g : stage) want[g] = true;
    refresh(w, want, stats);
    for (int g : stage)
      for (const auto& name : linear_short_names(LinearInput(g))) {
        Mat& weight = w.linear(name)->w;
        results.push_back(quantize_one(layer_prefix(l) + name, l, weight, stats.at(g), o, sink));
        auto tlog = transform_logs.find(results.back().name);
        if (tlog != transform_logs.end())
          results.back().log.insert(results.back().log.begin(), tlog->second.begin(), tlog->second.end());
        // A skipped layer stays in full precision, but a transform may have rescaled it (v_proj
        // rows by the o_proj group's scales): the output must keep the rescaled weights.
        if (results.back().skipped && !transforms.empty() && tensor_sink)
          tensor_sink(layer_prefix(l) + name + ".weight", weight);
      }
  }
}

}  // namespace

std::vector<LayerResult> quantize_sequential(const Model& model, const CalibrationSet& calib,
                                             const PipelineOptions& o, const LayerSink& sink,
                                             const TensorSink& tensor_sink) {
  const ModelConfig& cfg = model.config();
  BlockActivations acts(cfg, HeadWeights::load(model), calib.windows);
  const int widths[kNumLinearInputs] = {cfg.hidden_size, cfg.num_heads * cfg.head_dim,
                                        cfg.hidden_size, cfg.intermediate_size};
  // Inputs come from the block as transformed and quantized so far: they are recaptured.
  StatsRefresh refresh = [&](const BlockWeights& w, const std::array<bool, kNumLinearInputs>& want,
                             StatsMap& stats) {
    for (int g = 0; g < kNumLinearInputs; ++g) {
      stats.erase(g);
      if (want[g]) stats.emplace(g, InputStats(widths[g]));
    }
    acts.run(w, want, [&](LinearInput g, size_t, const Mat& x) { stats.at(int(g)).add_batch(x); },
             false);
  };
  std::vector<LayerResult> results;
  Progress bar("quantize", size_t(cfg.num_layers), o.quiet);
  const int first = std::min(o.hooks.resume_from, cfg.num_layers);
  for (int l = 0; l < first; ++l) {
    PTQ_ASSERT(bool(o.hooks.done_block), "resuming needs the finished blocks' weights");
    acts.run(o.hooks.done_block(l), {}, {}, true);
  }
  for (int l = first; l < cfg.num_layers; ++l) {
    BlockWeights w = BlockWeights::load(model, l);
    process_block(l, w, refresh, o, sink, tensor_sink, results);
    acts.run(w, {}, {}, true);
    if (o.hooks.on_block_done) o.hooks.on_block_done(l, w);
    bar.update(size_t(l) + 1);
  }
  return results;
}

std::vector<LayerResult> quantize_independent(const Model& model, const ActivationFile& acts,
                                              const PipelineOptions& o, const LayerSink& sink,
                                              const TensorSink& tensor_sink) {
  const ModelConfig& cfg = model.config();
  acts.check_fits(cfg);
  std::vector<LayerResult> results;
  Progress bar("quantize", size_t(cfg.num_layers), o.quiet);
  for (int l = std::min(o.hooks.resume_from, cfg.num_layers); l < cfg.num_layers; ++l) {
    // The file's inputs do not change as layers are quantized: each group's statistics are read
    // once (from its first consumer's dataset) and only transforms update them.
    StatsRefresh refresh = [&](const BlockWeights&, const std::array<bool, kNumLinearInputs>& want,
                               StatsMap& stats) {
      for (int g = 0; g < kNumLinearInputs; ++g) {
        if (!want[g] || stats.count(g)) continue;
        const std::string module = linear_consumers(l, LinearInput(g)).front();
        const std::string ds = acts.find_input(module);
        if (ds.empty())
          throw Error("activation file has no input for '" + module +
                      "' (no dataset lists it in its `consumers` attribute)");
        InputStats st(int(acts.cols(ds)));
        // One window per batch, as the sequential mode feeds them, so both modes form the same H.
        const int64_t rows = acts.rows(ds), chunk = acts.info().seq_len > 0 ? acts.info().seq_len : 4096;
        for (int64_t b = 0; b < rows; b += chunk)
          st.add_batch(acts.read_rows(ds, b, std::min(chunk, rows - b)));
        stats.emplace(g, std::move(st));
      }
    };
    BlockWeights w = BlockWeights::load(model, l);
    process_block(l, w, refresh, o, sink, tensor_sink, results);
    if (o.hooks.on_block_done) o.hooks.on_block_done(l, w);
    bar.update(size_t(l) + 1);
  }
  return results;
}

}  // namespace ptq
