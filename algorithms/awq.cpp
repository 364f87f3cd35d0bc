// The "awq" transform stage: scale search + folding, then clip search (awq.h, docs/awq.md).
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 kernels and a false
// -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include "algorithms/awq.h"

#include <charconv>
#include <chrono>

#include "algorithms/awq_search.h"
#include "algorithms/channel_fold.h"
#include "ptq/error.h"

namespace ptq {
namespace {

const char* objective_name(awq::Objective o) {
  switch (o) {
    case awq::Objective::kModule: return "module";
    case awq::Objective::kFull: return "full";
    case awq::Objective::kBlockDiagonal: return "block";
  }
  return "?";
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// llm-awq does not clip q/k: their outputs meet in softmax(q kᵀ), where the linear output
// error is a poor guide to what a clamp costs.
bool is_query_or_key(const std::string& name) { return ends_with(name, "q_proj") || ends_with(name, "k_proj"); }

void check_group(const GroupContext& g) {
  PTQ_ASSERT(g.stats && g.quantizer && !g.layers.empty() && g.layers.size() == g.names.size());
  for (size_t i = 0; i < g.layers.size(); ++i) {
    if (g.layers[i]->w.size() == 0)
      throw Error("awq: layer '" + g.names[i] + "' has no dense weights (packed checkpoints cannot be transformed)");
    PTQ_ASSERT(g.layers[i]->cols() == g.stats->k(), "layer width differs from its input statistics");
  }
}

class Awq final : public WeightTransform {
 public:
  explicit Awq(const Spec& spec) : o_(awq_options_from_spec(spec)) {}
  std::string spec() const override { return awq_spec(o_); }
  void apply(GroupContext& group, QuantLog* log) const override { apply_awq(o_, group, log); }
  int64_t probe_tokens() const override { return o_.scale && o_.objective == awq::Objective::kModule ? o_.tokens : 0; }

 private:
  AwqOptions o_;
};

const TransformRegistrar kRegister("awq", [](const Spec& s) -> std::unique_ptr<WeightTransform> {
  return std::make_unique<Awq>(s);
});

}  // namespace

AwqOptions awq_options_from_spec(const Spec& spec) {
  const std::string where = "spec '" + spec.to_string() + "'";
  AwqOptions o;
  o.grid = spec.int_value("grid", o.grid);
  o.clip_grid = spec.int_value("clip_grid", o.clip_grid);
  o.max_shrink = spec.double_value("max_shrink", o.max_shrink);
  if (const auto obj = spec.value("objective")) {
    if (*obj == "module") o.objective = awq::Objective::kModule;
    else if (*obj == "full") o.objective = awq::Objective::kFull;
    else if (*obj == "block") o.objective = awq::Objective::kBlockDiagonal;
    else throw Error(where + ": objective must be 'module', 'full' or 'block', not '" + *obj + "'");
  }
  o.tokens = spec.int_value("tokens", o.tokens);
  const bool scale = spec.flag("scale"), clip = spec.flag("clip");
  o.scale = !spec.flag("no_scale");
  o.clip = !spec.flag("no_clip");
  spec.check_all_used();
  if ((scale && !o.scale) || (clip && !o.clip)) throw Error(where + ": contradictory flags");
  if (!o.scale && !o.clip) throw Error(where + ": no_scale and no_clip leave nothing to do");
  if (o.grid < 1 || o.clip_grid < 1) throw Error(where + ": grid and clip_grid must be >= 1");
  if (o.tokens < 1) throw Error(where + ": tokens must be >= 1");
  if (!(o.max_shrink > 0 && o.max_shrink < 1)) throw Error(where + ": max_shrink must be in (0, 1)");
  return o;
}

std::string awq_spec(const AwqOptions& o) {
  const AwqOptions d;
  std::string args;
  auto add = [&](const std::string& a) { args += (args.empty() ? "" : ",") + a; };
  if (o.grid != d.grid) add("grid=" + std::to_string(o.grid));
  if (o.clip_grid != d.clip_grid) add("clip_grid=" + std::to_string(o.clip_grid));
  if (o.max_shrink != d.max_shrink) add("max_shrink=" + spec_number(o.max_shrink));
  if (o.objective != d.objective) add(std::string("objective=") + objective_name(o.objective));
  if (o.tokens != d.tokens) add("tokens=" + std::to_string(o.tokens));
  if (!o.scale) add("no_scale");
  if (!o.clip) add("no_clip");
  return args.empty() ? "awq" : "awq(" + args + ")";
}

void apply_awq(const AwqOptions& o, GroupContext& g, QuantLog* log) {
  check_group(g);
  const auto t0 = std::chrono::steady_clock::now();
  const QuantGrid grid = g.quantizer->grid();
  std::string msg = "awq " + g.input_name + ":";
  if (o.scale) {
    const std::string blocker = fold_blocker(g, g.stats->k());
    if (blocker.empty()) {
      std::vector<const Mat*> weights;
      for (const Linear* l : g.layers) weights.push_back(&l->w);
      // o and down: the module is the layer itself, whose output error is exact from H; with
      // inputs read from an activation file there are no tokens to run a module on.
      const awq::Objective objective =
          o.objective == awq::Objective::kModule && !g.module_error ? awq::Objective::kFull : o.objective;
      const awq::ScaleSearch s =
          objective == awq::Objective::kModule
              ? awq::search_scales_module(weights, *g.stats, grid, o.grid, g.module_error)
              : awq::search_scales(weights, *g.stats, grid, o.grid, objective);
      fold_scales(g, s.scales);
      msg += " alpha=" + spec_number(s.alpha) + " (" + objective_name(objective) + " objective " +
             spec_number(s.errors[size_t(s.alpha * o.grid + 0.5)]) + ", " + spec_number(s.errors[0]) + " at alpha=0" +
             (objective == awq::Objective::kModule ? " on " + std::to_string(g.module_tokens) + " tokens" : "") + ");";
    } else {
      msg += " no scales (" + blocker + ");";
    }
  }
  if (o.clip) {
    int clipped = 0;
    for (size_t i = 0; i < g.layers.size(); ++i) {
      if (is_query_or_key(g.names[i])) continue;
      Mat& w = g.layers[i]->w;
      awq::apply_clip(w, awq::search_clip(w, *g.stats, grid, o.clip_grid, o.max_shrink), grid);
      ++clipped;
    }
    msg += " clipped " + std::to_string(clipped) + " of " + std::to_string(g.layers.size()) + " layers";
  }
  if (log) {
    log->messages.push_back(msg);
    log->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
}

}  // namespace ptq
