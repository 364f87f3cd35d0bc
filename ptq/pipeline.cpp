#include "ptq/pipeline.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <regex>

#include "ptq/block_runner.h"
#include "ptq/error.h"
#include "ptq/module_probe.h"
#include "ptq/progress.h"

namespace ptq {
namespace {

using Clock = std::chrono::steady_clock;

Spec with_arg(Spec s, const std::string& key, const std::string& value) {
  for (auto& a : s.args) {
    if (a.key == key) {
      a.value = value;
      return s;
    }
  }
  s.args.push_back({key, value});
  return s;
}

std::optional<Spec> quantizer_spec_for(const std::string& name, const Spec& quantizer,
                                       const std::vector<LayerOverride>& overrides) {
  Spec spec = quantizer;
  for (const auto& ov : overrides) {
    if (!std::regex_search(name, std::regex(ov.pattern))) continue;
    if (ov.skip) return std::nullopt;
    if (ov.bits) spec = with_arg(spec, "w", std::to_string(*ov.bits));
    if (ov.group_size) spec = with_arg(spec, "g", std::to_string(*ov.group_size));
    for (const SpecArg& a : ov.args) spec = with_arg(spec, a.key, a.value);
    for (const std::string& key : ov.unset)
      std::erase_if(spec.args, [&](const SpecArg& a) { return a.key == key; });
  }
  return spec;
}

// The recipe's stage objects for one pipeline run: transforms and refiners built once, and one
// quantizer per distinct spec after overrides, so scratch a quantizer keeps between calls (the
// GPTQ workspace) serves every layer of that spec.
class Stages {
 public:
  explicit Stages(const PipelineOptions& o) : o_(o), recipe_(split_recipe(o.recipe)) {
    for (const Spec& s : recipe_.transforms) transforms_.push_back(make_transform(s));
    for (const Spec& s : recipe_.refiners) refiners_.push_back(make_refiner(s));
  }
  const WeightQuantizer* quantizer(const std::string& layer) {
    const std::optional<Spec> spec = quantizer_spec_for(layer, recipe_.quantizer, o_.overrides);
    if (!spec) return nullptr;
    std::unique_ptr<WeightQuantizer>& q = cache_[spec->to_string()];
    if (!q) q = make_quantizer(*spec, o_.constraints);
    return q.get();
  }
  const std::vector<std::unique_ptr<WeightTransform>>& transforms() const { return transforms_; }
  int64_t probe_tokens() const {
    int64_t n = 0;
    for (const auto& t : transforms_) n = std::max(n, t->probe_tokens());
    return n;
  }
  const std::vector<std::unique_ptr<LayerRefiner>>& refiners() const { return refiners_; }
  bool transforms_read_inputs() const {
    return std::any_of(transforms_.begin(), transforms_.end(), [](const auto& t) { return t->needs_stats(); });
  }
  bool rewrites_model() const {
    return std::any_of(transforms_.begin(), transforms_.end(), [](const auto& t) { return t->rewrites_model(); });
  }
  // The model-level transforms on the head; what they log, each line prefixed "model: ".
  std::vector<std::string> rewrite_head(const ModelConfig& cfg, HeadWeights& head) const {
    QuantLog log;
    for (const auto& t : transforms_)
      if (t->rewrites_model()) t->rewrite_head(cfg, head, &log);
    for (auto& m : log.messages) m = "model: " + m;
    return log.messages;
  }
  void rewrite_block(const ModelConfig& cfg, int layer, BlockWeights& w) const {
    for (const auto& t : transforms_)
      if (t->rewrites_model()) t->rewrite_block(cfg, layer, w);
  }

 private:
  const PipelineOptions& o_;
  RecipeStages recipe_;
  std::vector<std::unique_ptr<WeightTransform>> transforms_;
  std::vector<std::unique_ptr<LayerRefiner>> refiners_;
  std::map<std::string, std::unique_ptr<WeightQuantizer>> cache_;
};

// b beside q's own branch, if any: [L1 B1]·[L2; B2] = L1·L2 + B1·B2, one branch of both ranks.
void attach_branch(QuantizedLayer& q, const LowRankBranch& b) {
  if (!q.low_rank) {
    q.low_rank = b;
    return;
  }
  LowRankBranch& l = *q.low_rank;
  PTQ_ASSERT(l.bits == b.bits, "both branches fp16");
  Mat l1(l.l1.rows(), l.rank() + b.rank()), l2(l.rank() + b.rank(), l.l2.cols());
  l1 << l.l1, b.l1;
  l2 << l.l2, b.l2;
  l.l1 = std::move(l1);
  l.l2 = std::move(l2);
}

LayerResult quantize_one(const std::string& name, int layer, Linear& lin, const InputStats& stats,
                         Stages& stages, const LayerSink& sink) {
  LayerResult r;
  r.name = name;
  r.layer = layer;
  r.rows = int(lin.w.rows());
  r.cols = int(lin.w.cols());
  const WeightQuantizer* quantizer = stages.quantizer(name);
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
  // Weights are finite (checked at load), so non-finite inputs mean the fp32 forward overflowed.
  if (quantizer->needs_stats() && stats.tokens() > 0 && !stats.hessian().diagonal().allFinite())
    throw Error(name + ": its calibration inputs are not finite: the float32 forward through the layers before "
                "it overflowed (weights or norm gains too large for float32 activations)");
  QuantizedLayer q;
  try {
    q = quantizer->quantize(lin.w, quantizer->needs_stats() ? &stats : nullptr, &log);
    for (const auto& refiner : stages.refiners())
      refiner->refine(*quantizer, lin.w, refiner->needs_stats() || quantizer->needs_stats() ? &stats : nullptr, q, &log);
  } catch (const Error& e) {
    throw Error(name + ": " + e.what());  // the quantizer sees a matrix; the user knows the layer
  }
  // Weights near float's limit make the grid's range overflow; nothing downstream can use that.
  const GridCodes& g = q.grid;
  if (!all_finite(g.scales.data(), size_t(g.scales.size())) || !all_finite(g.zeros.data(), size_t(g.zeros.size())))
    throw Error(name + ": " + r.spec + " gave a non-finite scale or zero point: the weights' range (max |w| = " +
                std::to_string(lin.w.cwiseAbs().maxCoeff()) + ") overflows float32");
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (lin.input_transform) q.input_transform = *lin.input_transform;
  // A transform's branch (svdquant): the quantizer saw the residual lin.w; the layer is both.
  Mat target;
  if (lin.branch) {
    attach_branch(q, *lin.branch);
    target = lin.w + lin.branch->product();
    lin.branch.reset();
  }
  const Mat& original = target.size() ? target : lin.w;
  Mat stored = q.stored_weight();
  // In the basis the quantizer saw: lin.w and the statistics both describe T(x).
  r.rel_error = relative_output_error(original, stored, stats.hessian());
  r.bits_per_weight = q.bits_per_weight();
  r.parts = q.part_names();
  if (q.sparse) r.sparse_share = double(q.sparse->nnz()) / (double(r.rows) * double(r.cols));
  r.log = log.messages;
  lin.w = lin.input_transform ? q.effective_weight() : std::move(stored);
  lin.input_transform.reset();
  sink(r, &q);
  return r;
}

using StatsMap = std::map<int, InputStats>;
// The module probes of a block as it is now (q/k/v and gate/up entries; the others null).
using ModuleProbes = std::array<std::unique_ptr<ModuleProbe>, kNumLinearInputs>;
// Makes them from sampled calibration windows; empty where no tokens are at hand.
using ProbeSource = std::function<ModuleProbes(const BlockWeights&)>;
// Fills `stats` with the statistics of the inputs in `want` for the block as it is now.
using StatsRefresh =
    std::function<void(const BlockWeights&, const std::array<bool, kNumLinearInputs>&, StatsMap&)>;

// Runs every transform stage on each linear group of block `l`, in block order, on the fp block.
// Returns the transforms' log messages keyed by the first layer of each group.
std::map<std::string, std::vector<std::string>> transform_block(int l, BlockWeights& w, StatsMap& stats,
                                                                 const ModuleProbes& probes, Stages& stages,
                                                                 const TensorSink& tensor_sink) {
  std::map<std::string, std::vector<std::string>> logs;
  for (int g = 0; g < kNumLinearInputs; ++g) {
    GroupContext ctx;
    ctx.input_name = layer_prefix(l) + linear_input_name(LinearInput(g));
    ctx.input = LinearInput(g);
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
    ctx.quantizer = stages.quantizer(ctx.names[0]);
    if (!ctx.quantizer) continue;  // a skipped group stays exactly as it was
    if (const ModuleProbe* probe = probes[size_t(g)].get()) {
      ctx.module_error = [probe](const std::vector<const Mat*>& c) { return probe->error(c); };
      ctx.module_tokens = probe->tokens();
    }
    QuantLog log;
    for (const auto& t : stages.transforms()) t->apply(ctx, &log);
    logs[ctx.names[0]] = log.messages;
  }
  if (tensor_sink) {
    tensor_sink(layer_prefix(l) + "input_layernorm.weight", w.attn_norm);
    tensor_sink(layer_prefix(l) + "post_attention_layernorm.weight", w.ffn_norm);
  }
  return logs;
}

void process_block(int l, BlockWeights& w, const StatsRefresh& refresh, const ProbeSource& probe_source,
                   Stages& stages, const PipelineOptions& o, const LayerSink& sink, const TensorSink& tensor_sink,
                   std::vector<LayerResult>& results) {
  StatsMap stats;
  std::map<std::string, std::vector<std::string>> transform_logs;
  const bool transformed = !stages.transforms().empty();
  if (transformed && !stages.transforms_read_inputs()) {
    // Nothing to fit (a rotation, act(...)): empty statistics of the right widths, which the
    // stages below recompute from the block as transformed.
    for (int g = 0; g < kNumLinearInputs; ++g)
      stats.emplace(g, InputStats(w.linear(linear_short_names(LinearInput(g)).front())->cols()));
    transform_logs = transform_block(l, w, stats, ModuleProbes{}, stages, tensor_sink);
    stats.clear();
  } else if (transformed) {
    refresh(w, {true, true, true, true}, stats);
    // Made before any group is transformed: each module's later layers (o_proj, down_proj) are
    // transformed only after the group feeding them, so the probes see the block as it is.
    const ModuleProbes probes = probe_source ? probe_source(w) : ModuleProbes{};
    transform_logs = transform_block(l, w, stats, probes, stages, tensor_sink);
  }
  const std::vector<std::vector<int>> order =
      o.true_sequential ? std::vector<std::vector<int>>{{0}, {1}, {2}, {3}}
                        : std::vector<std::vector<int>>{{0, 1, 2, 3}};
  for (const auto& stage : order) {
    std::array<bool, kNumLinearInputs> want{};
    for (int g : stage) want[g] = true;
    refresh(w, want, stats);
    for (int g : stage)
      for (const auto& name : linear_short_names(LinearInput(g))) {
        Linear& lin = *w.linear(name);
        results.push_back(quantize_one(layer_prefix(l) + name, l, lin, stats.at(g), stages, sink));
        auto tlog = transform_logs.find(results.back().name);
        if (tlog != transform_logs.end())
          results.back().log.insert(results.back().log.begin(), tlog->second.begin(), tlog->second.end());
        if (!results.back().skipped) continue;
        // A skipped layer stays in full precision, but a transform may have changed it (v_proj
        // rows by the o_proj group's scales, a group's input transform): the output keeps its
        // weight for untransformed inputs.
        if (lin.branch) {
          lin.w += lin.branch->product();
          lin.branch.reset();
        }
        if (lin.input_transform) {
          lin.w = lin.input_transform->unfold_from_weight(lin.w);
          lin.input_transform.reset();
        }
        if (transformed && tensor_sink) tensor_sink(layer_prefix(l) + name + ".weight", lin.w);
      }
  }
}

// The head tensors a model-level transform rewrote, for the output. A tied lm_head that no longer
// equals the embedding is written as its own tensor (the output formats untie the config).
void sink_head(const ModelConfig& cfg, const HeadWeights& head, const TensorSink& sink) {
  sink("model.embed_tokens.weight", head.embed);
  sink("model.norm.weight", head.final_norm);
  if (!cfg.tie_word_embeddings || head.lm_head != head.embed) sink("lm_head.weight", head.lm_head);
}

// The transform a group's layers apply to their input until quantized (shared by the group).
const InputTransform* group_input_transform(const BlockWeights& w, LinearInput g) {
  return w.linear(linear_short_names(g).front())->input_transform.get();
}

}  // namespace

std::optional<Spec> layer_quantizer_spec(const std::string& name, const PipelineOptions& o) {
  return quantizer_spec_for(name, split_recipe(o.recipe).quantizer, o.overrides);
}

std::unique_ptr<WeightQuantizer> layer_quantizer(const std::string& name, const PipelineOptions& o) {
  const std::optional<Spec> spec = layer_quantizer_spec(name, o);
  return spec ? make_quantizer(*spec, o.constraints) : nullptr;
}

std::vector<std::string> linear_layer_names(const ModelConfig& cfg) {
  std::vector<std::string> names;
  for (int l = 0; l < cfg.num_layers; ++l)
    for (int g = 0; g < kNumLinearInputs; ++g)
      for (const auto& c : linear_consumers(l, LinearInput(g))) names.push_back(c);
  return names;
}

std::vector<LayerResult> quantize_sequential(const Model& model, const TokenWindows& windows,
                                             const PipelineOptions& o, const LayerSink& sink,
                                             const TensorSink& tensor_sink) {
  const ModelConfig& cfg = model.config();
  Stages stages(o);
  HeadWeights head = HeadWeights::load(model);
  std::vector<std::string> model_log;
  if (stages.rewrites_model()) {
    model_log = stages.rewrite_head(cfg, head);
    if (tensor_sink) sink_head(cfg, head, tensor_sink);
  }
  BlockActivations acts(cfg, std::move(head), windows);
  const int widths[kNumLinearInputs] = {cfg.hidden_size, cfg.num_heads * cfg.head_dim,
                                        cfg.hidden_size, cfg.intermediate_size};
  // Inputs come from the block as transformed and quantized so far: they are recaptured, and a
  // group whose layers carry an input transform gets the statistics of the transformed input.
  StatsRefresh refresh = [&](const BlockWeights& w, const std::array<bool, kNumLinearInputs>& want,
                             StatsMap& stats) {
    std::array<const InputTransform*, kNumLinearInputs> t{};
    for (int g = 0; g < kNumLinearInputs; ++g) {
      stats.erase(g);
      if (!want[g]) continue;
      stats.emplace(g, InputStats(widths[g]));
      t[g] = group_input_transform(w, LinearInput(g));
    }
    acts.run(w, want, [&](LinearInput g, size_t, const Mat& x) {
      stats.at(int(g)).add_batch(t[int(g)] ? t[int(g)]->apply(x) : x);
    }, false);
  };
  ProbeSource probes;
  if (const int64_t tokens = stages.probe_tokens(); tokens > 0)
    probes = [&acts, &cfg, tokens](const BlockWeights& w) {
      std::array<std::vector<Mat>, kNumLinearInputs> x;
      std::array<bool, kNumLinearInputs> want{};
      for (int g = 0; g < kNumLinearInputs; ++g) want[size_t(g)] = group_has_module(LinearInput(g));
      acts.capture_first(acts.windows_for_tokens(tokens), w, want,
                         [&](LinearInput g, size_t, const Mat& in) { x[size_t(g)].push_back(in); });
      ModuleProbes out;
      for (int g = 0; g < kNumLinearInputs; ++g)
        if (want[size_t(g)])
          out[size_t(g)] = std::make_unique<ModuleProbe>(cfg, acts.rope(), w, LinearInput(g), std::move(x[size_t(g)]));
      return out;
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
    stages.rewrite_block(cfg, l, w);
    const size_t block_start = results.size();
    process_block(l, w, refresh, probes, stages, o, sink, tensor_sink, results);
    if (l == 0 && results.size() > block_start) {
      auto& log = results[block_start].log;
      log.insert(log.begin(), model_log.begin(), model_log.end());
    }
    acts.run(w, {}, {}, true);
    if (o.hooks.on_block_done) o.hooks.on_block_done(l, w);
    bar.update(size_t(l) + 1);
  }
  return results;
}

std::vector<LayerResult> quantize_independent(const Model& model, const CapturedInputs& inputs,
                                              const PipelineOptions& o, const LayerSink& sink,
                                              const TensorSink& tensor_sink) {
  const ModelConfig& cfg = model.config();
  inputs.check_fits(cfg);
  Stages stages(o);
  if (stages.rewrites_model())
    throw Error("recipe '" + recipe_to_string(o.recipe) + "' rewrites the whole model (a rotation of the residual "
                "stream), which changes every layer's inputs: it needs the model's own forward (sequential mode "
                "with --calib-data), not inputs captured from the original model");
  std::vector<LayerResult> results;
  Progress bar("quantize", size_t(cfg.num_layers), o.quiet);
  for (int l = std::min(o.hooks.resume_from, cfg.num_layers); l < cfg.num_layers; ++l) {
    // The captured inputs do not change as layers are quantized: each group's statistics are read
    // once (from its first consumer's capture) and only transforms update them.
    StatsRefresh refresh = [&](const BlockWeights&, const std::array<bool, kNumLinearInputs>& want,
                               StatsMap& stats) {
      for (int g = 0; g < kNumLinearInputs; ++g)
        if (want[g] && !stats.count(g))
          stats.emplace(g, inputs.input_stats(linear_consumers(l, LinearInput(g)).front()));
    };
    BlockWeights w = BlockWeights::load(model, l);
    process_block(l, w, refresh, {}, stages, o, sink, tensor_sink, results);
    if (o.hooks.on_block_done) o.hooks.on_block_done(l, w);
    bar.update(size_t(l) + 1);
  }
  return results;
}

}  // namespace ptq
