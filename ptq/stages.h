#pragma once
// The stages a recipe is made of, by role (docs/architecture.md, "Recipes"):
//
//   transforms*  quantizer  refiners*        e.g. rot(hadamard)+awq+gptq(w3,g128)+lorc(r32)
//
// - A transform (WeightTransform) rewrites one linear group into an equivalent form before
//   quantization: AWQ scales folded into the producing RMSNorm, an online input transform
//   (x → x·T) attached to the group's layers. It keeps the group's InputStats describing the
//   transformed input.
// - The quantizer (WeightQuantizer) turns a layer's weights (in the transformed basis) and
//   statistics into a QuantizedLayer.
// - A refiner (LayerRefiner) adds to that result: a low-rank fit of the quantization error,
//   sparse outliers; or alternates with the quantizer (LQ-LoRA).
// Algorithms register each stage by name and role (algorithms/), and the pipeline builds
// them from spec strings: it names no algorithm. Output formats hand their constraints on the
// grid (GridConstraints) to the quantizer before any layer is quantized.
#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ptq/forward.h"
#include "ptq/input_stats.h"
#include "ptq/linear.h"
#include "ptq/quantized_layer.h"
#include "ptq/spec.h"

namespace ptq {

enum class StageRole { kTransform, kQuantizer, kRefiner };
const char* stage_role_name(StageRole r);  // "transform", "quantizer", "refiner"

struct QuantLog {
  std::vector<std::string> messages;  // e.g. "Cholesky failed, damping raised to 0.1"
  double seconds = 0;
};

// The bits of the sub-block scale codes of the ggml K type whose grid `g` is, 0 for none:
// Q2_K w2 g16 asym (4), Q3_K w3 g16 sym (6, signed), Q4_K w4 g32 asym (6), Q5_K w5 g32 asym (6),
// Q6_K w6 g16 sym (8, signed).
inline int k_quant_sub_bits(const QuantGrid& g) {
  if (g.group_size == 16 && g.bits == 2 && !g.sym) return 4;
  if (g.group_size == 16 && g.bits == 3 && g.sym) return 6;
  if (g.group_size == 32 && (g.bits == 4 || g.bits == 5) && !g.sym) return 6;
  if (g.group_size == 16 && g.bits == 6 && g.sym) return 8;
  return 0;
}

// What an output format requires of every grid, applied by the quantizer to its own grid before
// it fits any statistic, so error feedback sees exactly what the format stores.
struct GridConstraints {
  bool fp16_statistics = false;  // scales (and fractional zero points) rounded to fp16 when fitted
  int min_zero = 0;              // asymmetric integer zero points fitted in [min_zero, 2^b − 1]
  bool additive_offsets = false; // groups fitted as scale·code + offset (QuantGrid::additive)
  bool signed_extreme = false;   // symmetric grids scaled by their signed extreme (QuantGrid::signed_extreme)
  // GGUF K-quant super-blocks of 256 weights (QuantGrid::super_groups) for every grid that is one
  // of ggml's K types (k_quant_sub_bits), additive when asymmetric, signed-extreme when symmetric.
  bool k_quant_super_blocks = false;
  void apply(QuantGrid& g) const {
    if (k_quant_super_blocks && k_quant_sub_bits(g) > 0) {
      g.super_groups = 256 / g.group_size;
      g.sub_bits = k_quant_sub_bits(g);
      g.additive = !g.sym;
      g.signed_extreme = g.sym;
      g.fp16_stats = true;
    }
    g.signed_extreme = g.signed_extreme || (signed_extreme && g.sym);
    g.fp16_stats = g.fp16_stats || fp16_statistics;
    g.min_zero = std::max(g.min_zero, min_zero);
    g.additive = g.additive || additive_offsets;
  }
};

class WeightQuantizer {
 public:
  virtual ~WeightQuantizer() = default;
  virtual std::string spec() const = 0;  // canonical spec string, parses back to an equal object
  virtual const QuantGrid& grid() const = 0;
  virtual bool needs_stats() const = 0;  // false for RTN
  // Called for one layer after another (implementations may keep scratch between calls).
  virtual QuantizedLayer quantize(const Mat& w, const InputStats* stats, QuantLog* log) const = 0;
};

class LayerRefiner {
 public:
  virtual ~LayerRefiner() = default;
  virtual std::string spec() const = 0;
  virtual bool needs_stats() const = 0;
  // `w` is the weight `quantizer` saw (same basis as q's stored parts) and q its result; `stats`
  // the layer's input statistics when the refiner or the quantizer reads them, else nullptr. Adds
  // parts to q. A refiner may also replace q by another result of the same quantizer (LQ-LoRA
  // requantizes W − L1·L2), so every grid still meets the format's constraints.
  virtual void refine(const WeightQuantizer& quantizer, const Mat& w, const InputStats* stats, QuantizedLayer& q,
                      QuantLog* log) const = 0;
};

// One linear group as a transform sees it.
struct GroupContext {
  std::string input_name;            // e.g. model.layers.3 qkv
  std::vector<std::string> names;    // HF module names of `layers`
  std::vector<Linear*> layers;       // the layers reading this input (dense weights)
  Vec* prev_norm = nullptr;          // RMSNorm gain producing the input, or nullptr
  Linear* prev_linear = nullptr;     // linear layer producing the input (rows scale), or nullptr
  InputStats* stats = nullptr;       // statistics of the input, updated by the transform
  const WeightQuantizer* quantizer = nullptr;  // how the layers will be quantized afterwards
  // Output error of the module the group feeds (q/k/v: the attention after o_proj; gate/up: the
  // MLP after down_proj) with the group's layers replaced by `candidate` (one [N, K] matrix per
  // layer, in their current basis): Σ ‖module(x; candidate) − module(x; now)‖² over the sampled
  // calibration tokens of the transforms' probe_tokens(). Empty when the module is the group's
  // own layer (o, down) or no tokens are at hand (inputs read from an activation file).
  std::function<double(const std::vector<const Mat*>& candidate)> module_error;
  int64_t module_tokens = 0;  // tokens module_error sums over
  LinearInput input = LinearInput::kQKV;  // which of the block's inputs the group reads
};

class WeightTransform {
 public:
  virtual ~WeightTransform() = default;
  virtual std::string spec() const = 0;
  virtual void apply(GroupContext& group, QuantLog* log) const = 0;
  // Calibration tokens of each group's input that apply() wants module_error to run on (0: none).
  virtual int64_t probe_tokens() const { return 0; }
  // False when the transform neither reads nor fits anything to calibration inputs (a rotation).
  virtual bool needs_stats() const { return true; }

  // Model-level rewriting, for what every block shares (a rotation of the residual stream): the
  // head once before any block runs, then each block as it is loaded, before apply() sees its
  // groups. Both keep the model's full-precision function. Only called when rewrites_model().
  virtual bool rewrites_model() const { return false; }
  virtual void rewrite_head(const ModelConfig&, HeadWeights&, QuantLog*) const {}
  virtual void rewrite_block(const ModelConfig&, int /*layer*/, BlockWeights&) const {}
};

// Attaches x → x·T to every layer of `group`, keeping the group equivalent: weights become
// W·T⁻ᵀ, the statistics describe x·T, and each Linear applies T online until it is quantized.
void attach_input_transform(GroupContext& group, const InputTransform& t);

using QuantizerFactory = std::function<std::unique_ptr<WeightQuantizer>(const Spec&, const GridConstraints&)>;
using TransformFactory = std::function<std::unique_ptr<WeightTransform>(const Spec&)>;
using RefinerFactory = std::function<std::unique_ptr<LayerRefiner>(const Spec&)>;

// Registration happens in each algorithm's .cpp through a static Registrar; names are unique
// across roles.
void register_quantizer(const std::string& name, QuantizerFactory f);
void register_transform(const std::string& name, TransformFactory f);
void register_refiner(const std::string& name, RefinerFactory f);
std::optional<StageRole> stage_role(const std::string& name);  // nullopt when unknown
std::vector<std::string> registered_stages(StageRole role);
// Each throws Error naming the stage when it is unknown or registered under another role.
std::unique_ptr<WeightQuantizer> make_quantizer(const Spec& spec, const GridConstraints& c = {});
std::unique_ptr<WeightTransform> make_transform(const Spec& spec);
std::unique_ptr<LayerRefiner> make_refiner(const Spec& spec);
bool is_transform(const std::string& name);

struct QuantizerRegistrar {
  QuantizerRegistrar(const std::string& name, QuantizerFactory f) { register_quantizer(name, std::move(f)); }
};
struct TransformRegistrar {
  TransformRegistrar(const std::string& name, TransformFactory f) { register_transform(name, std::move(f)); }
};
struct RefinerRegistrar {
  RefinerRegistrar(const std::string& name, RefinerFactory f) { register_refiner(name, std::move(f)); }
};

// A recipe's stages by role. Throws Error naming the recipe unless it is transforms, exactly one
// quantizer, then refiners, every name registered.
struct RecipeStages {
  std::vector<Spec> transforms;
  Spec quantizer;
  std::vector<Spec> refiners;
};
RecipeStages split_recipe(const std::vector<Spec>& recipe);
// Throws Error listing every registered stage by role unless `name` is registered.
StageRole known_stage_role(const std::string& name);
// True when any stage reads calibration statistics (WeightTransform::needs_stats and the others' needs_stats).
bool recipe_needs_stats(const std::vector<Spec>& recipe);

}  // namespace ptq
