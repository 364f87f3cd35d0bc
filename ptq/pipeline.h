#pragma once
// The layer-by-layer quantization pipeline (docs/pipeline.md).
//
// Sequential mode (the GPTQ paper's protocol): block l's calibration inputs come from blocks
// 0..l-1 already quantized. Within a block, true-sequential order quantizes q/k/v, then o (its
// inputs recomputed with quantized q/k/v), then gate/up, then down. Memory holds one block's
// activations and the Hessians of the group being quantized.
//
// Independent mode: each linear layer is quantized from its weights and its inputs read from a
// calibration HDF5 file, without running the model.
//
// The pipeline names no algorithm: the recipe's quantizer stage is built through the registry.
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "algorithms/quantizer.h"
#include "algorithms/spec.h"
#include "calibration/activation_file.h"
#include "calibration/calibration_set.h"
#include "ptq/forward.h"
#include "ptq/model.h"

namespace ptq {

// Matched against the full tensor name without ".weight", e.g. model.layers.3.mlp.down_proj.
struct LayerOverride {
  std::string pattern;  // ECMAScript regex, searched (not anchored)
  std::optional<int> bits, group_size;
  bool skip = false;
};

// Resume hooks (ptq/resume_state.h fills them). Blocks [0, resume_from) were finished by an
// earlier run: the pipeline skips them, and in sequential mode runs their final weights
// (done_block) to re-derive the hidden states entering block resume_from. on_block_done sees
// each block's final weights (transformed, quantized) after all its layers went to the sinks.
struct BlockHooks {
  int resume_from = 0;
  std::function<BlockWeights(int layer)> done_block;
  std::function<void(int layer, const BlockWeights& final_weights)> on_block_done;
};

struct PipelineOptions {
  std::vector<Spec> recipe;  // transform stages, then the weight quantizer as the last stage
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
  double bits_per_weight = 0;  // codes plus fp16 scale and zero per group
  std::vector<std::string> log;
};

// Receives each quantized linear layer as soon as it is done (in model order).
using LayerSink = std::function<void(const LayerResult&, const GridCodes*)>;

// Receives full-precision tensors that transforms changed (e.g. RMSNorm gains with AWQ scales
// folded in); the output must store these instead of the source's.
using TensorSink = std::function<void(const std::string& name, const Mat& value)>;

std::vector<LayerResult> quantize_sequential(const Model& model, const CalibrationSet& calib,
                                             const PipelineOptions& options, const LayerSink& sink,
                                             const TensorSink& tensor_sink = {});
std::vector<LayerResult> quantize_independent(const Model& model, const ActivationFile& acts,
                                              const PipelineOptions& options, const LayerSink& sink,
                                              const TensorSink& tensor_sink = {});

// The quantizer for one layer (the recipe's last stage with matching overrides applied), or
// nullptr when an override skips it.
std::unique_ptr<WeightQuantizer> layer_quantizer(const std::string& name, const PipelineOptions& o);

// Every quantizable linear layer of the model, in order (HF module names without ".weight").
std::vector<std::string> linear_layer_names(const ModelConfig& cfg);

}  // namespace ptq
