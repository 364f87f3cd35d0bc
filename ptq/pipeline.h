#pragma once
// The layer-by-layer quantization pipeline (docs/pipeline.md).
//
// Sequential mode (the GPTQ paper's protocol): block l's calibration inputs come from blocks
// 0..l-1 already quantized. Within a block, true-sequential order quantizes q/k/v, then o (its
// inputs recomputed with quantized q/k/v), then gate/up, then down. Memory holds one block's
// activations and the statistics of the group being quantized.
//
// Independent mode: each linear layer is quantized from its weights and its inputs captured
// elsewhere (ptq/captured_inputs.h), without running the model.
//
// The pipeline names no algorithm: it builds the recipe's stages by role through the registry
// (ptq/stages.h) — transforms, then the quantizer, then refiners — once per job and override.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ptq/captured_inputs.h"
#include "ptq/forward.h"
#include "ptq/model.h"
#include "ptq/spec.h"
#include "ptq/stages.h"

namespace ptq {

// Matched against the full tensor name without ".weight", e.g. model.layers.3.mlp.down_proj.
struct LayerOverride {
  std::string pattern;  // ECMAScript regex, searched (not anchored)
  std::optional<int> bits, group_size;
  bool skip = false;
  // Further quantizer arguments set (or replaced) on matching layers, e.g. {outlier, 0.5} for
  // SpQR's down_proj; an empty value is a bare flag.
  std::vector<SpecArg> args;
  std::vector<std::string> unset;  // bare flags removed from matching layers (YAML `{sym: false}`)
};

// Resume hooks (cli/jobs/resume_state.h fills them). Blocks [0, resume_from) were finished by an
// earlier run: the pipeline skips them, and in sequential mode runs their final weights
// (done_block) to re-derive the hidden states entering block resume_from. on_block_done sees
// each block's final weights (transformed, quantized) after all its layers went to the sinks.
struct BlockHooks {
  int resume_from = 0;
  std::function<BlockWeights(int layer)> done_block;
  std::function<void(int layer, const BlockWeights& final_weights)> on_block_done;
};

struct PipelineOptions {
  std::vector<Spec> recipe;     // transforms, one quantizer, refiners (split_recipe)
  GridConstraints constraints;  // what the output format requires of every grid
  bool true_sequential = true;
  std::vector<LayerOverride> overrides;
  bool quiet = false;
  BlockHooks hooks;
};

struct LayerResult {
  std::string name;  // HF module name, e.g. model.layers.0.self_attn.q_proj
  int layer = 0;
  int rows = 0, cols = 0;
  std::string spec;        // the quantizer spec used for this layer (after overrides)
  bool skipped = false;
  double rel_error = 0;    // ||XWᵀ − XŴᵀ||² / ||XWᵀ||² on the calibration inputs
  double seconds = 0;
  double bits_per_weight = 0;  // QuantizedLayer::storage_bits() per weight (32 when skipped)
  std::string parts;           // QuantizedLayer::part_names() ("" when skipped)
  double sparse_share = 0;     // nonzeros of the sparse part per weight (SpQR's outlier share)
  std::vector<std::string> log;
};

// Receives each quantized linear layer as soon as it is done (in model order).
using LayerSink = std::function<void(const LayerResult&, const QuantizedLayer*)>;

// Receives full-precision tensors that transforms changed (e.g. RMSNorm gains with AWQ scales
// folded in); the output must store these instead of the source's.
using TensorSink = std::function<void(const std::string& name, const Mat& value)>;

using TokenWindows = std::vector<std::vector<int32_t>>;

std::vector<LayerResult> quantize_sequential(const Model& model, const TokenWindows& windows,
                                             const PipelineOptions& options, const LayerSink& sink,
                                             const TensorSink& tensor_sink = {});
std::vector<LayerResult> quantize_independent(const Model& model, const CapturedInputs& inputs,
                                              const PipelineOptions& options, const LayerSink& sink,
                                              const TensorSink& tensor_sink = {});

// The quantizer spec for one layer (the recipe's quantizer with matching overrides applied), or
// nullopt when an override skips it.
std::optional<Spec> layer_quantizer_spec(const std::string& name, const PipelineOptions& o);
// The quantizer for one layer, built from layer_quantizer_spec, or nullptr when skipped.
std::unique_ptr<WeightQuantizer> layer_quantizer(const std::string& name, const PipelineOptions& o);

// Every quantizable linear layer of the model, in order (HF module names without ".weight").
std::vector<std::string> linear_layer_names(const ModelConfig& cfg);

}  // namespace ptq
