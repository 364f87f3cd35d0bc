#pragma once
// Output formats of `ptq compress --format SPEC` as one table (ggml style): an enum with a
// trait row per format saying what it takes as spec arguments, what it requires of every grid
// before quantization, which parts of a QuantizedLayer it can carry (and why not), how to
// write it, and how to recognise and read it back. The pipeline and the CLI name no format.
//
// Writers receive each quantized layer as the pipeline finishes it and write the checkpoint into
// a staging OutputDir at the end. They write every tensor they are handed (including names the
// source model lacks) and refuse with ptq::Error, naming the layer and the reason, anything they
// cannot carry: never a silent drop, never an assert on user data.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "formats/metadata.h"
#include "formats/output_dir.h"
#include "ptq/model.h"
#include "ptq/pipeline.h"
#include "ptq/quantized_layer.h"
#include "ptq/spec.h"
#include "ptq/stages.h"
#include "ptq/tokenizer_metadata.h"

namespace ptq {

enum class FormatId : uint8_t { kFake, kPtq, kGptq, kGptqV2, kAwq, kCompressedTensors, kGguf };

class CheckpointWriter;

// A per-layer override that a format applies: a preset mixture's type for the layer (GGUF
// Q4_K_M's Q6_K attn_v), or a replacement for a grid the layer's shape cannot hold (GGUF: a K type
// on a width that is not a multiple of 256 takes a 32-block type); and why.
struct FormatFallback {
  LayerOverride override;  // pattern left empty: the caller names the layer
  std::string why;
};

struct FormatTraits {
  FormatId id;
  const char* name;     // spec name: "gptq"
  const char* summary;  // one line for --help and docs
  GridConstraints constraints;  // reaches the quantizer before any layer is quantized
  // "" when the format can hold a layer of this shape quantized with `g`, else why not. Checked
  // for every layer before any work.
  std::string (*grid_refusal)(int rows, int cols, const QuantGrid& g);
  // "" when the format can store every part of `layer`, else why not.
  std::string (*layer_refusal)(const QuantizedLayer& layer);
  std::unique_ptr<CheckpointWriter> (*make_writer)(const Spec& spec);
  // True when a checkpoint's config.json quantization_config names this format (on read).
  bool (*detect)(const nlohmann::json& quantization_config);
  // The quantized linear layers of a checkpoint in this format, by module name; nullptr for
  // formats whose layers load as ordinary dense weights (fake-quant). Throws Error naming the
  // file and tensor on anything malformed.
  std::map<std::string, QuantizedLayer> (*read_layers)(const Model& model);
  // nullptr, or the override the format applies to `layer` (shape rows × cols, grid `g` after the
  // job's own overrides); std::nullopt when none.
  std::optional<FormatFallback> (*layer_override)(const std::string& layer, const ModelConfig& config, int rows,
                                                  int cols, const QuantGrid& g);
  // True for the formats `ptq eval` is the engine of (ptq, fake), which apply a recipe's act(...)
  // stage; the others' engines would run full-precision activations, so they refuse it.
  bool activation_quant = false;
};

const std::vector<FormatTraits>& format_table();
// The row for a format spec string (`gptq`, later `gguf(q4_k)`); throws Error listing the known
// formats when none matches, or when the spec has arguments the format does not take.
const FormatTraits& format_traits(const std::string& spec);
std::vector<std::string> format_names();
// The format a checkpoint directory is in, from its config.json quantization_config; nullptr for
// an fp checkpoint, a fake-quant one or a file. Throws Error for a quantization_config naming a
// method ptq knows in a variant it does not read.
const FormatTraits* detect_format(const std::string& dir);

class CheckpointWriter {
 public:
  explicit CheckpointWriter(const FormatTraits& traits) : traits_(traits) {}
  virtual ~CheckpointWriter() = default;
  const FormatTraits& traits() const { return traits_; }
  // True for a format that embeds the tokenizer (GGUF): the caller hands it to prepare().
  virtual bool embeds_tokenizer() const { return false; }
  // Called once before any work: throws Error when the format cannot hold this model (its
  // architecture, RoPE, tokenizer), so that the refusal comes before hours of quantization.
  virtual void prepare(const Model&, std::shared_ptr<const TokenizerMetadata>) {}
  // q is nullptr for a layer the recipe skipped (it stays in full precision). Throws Error naming
  // the layer when the format cannot store one of its parts.
  void add_layer(const LayerResult& result, const QuantizedLayer* q);
  // A full-precision tensor that a transform changed (e.g. an RMSNorm gain with scales folded
  // in) or created (an untied lm_head): written instead of the source's tensor of that name.
  virtual void replace_tensor(const std::string& name, const Mat& value) = 0;
  virtual void finish(const Model& model, const CheckpointMetadata& meta, const OutputDir& out) = 0;

 protected:
  virtual void store_layer(const LayerResult& result, const QuantizedLayer* q) = 0;

 private:
  const FormatTraits& traits_;
};

std::unique_ptr<CheckpointWriter> make_checkpoint_writer(const std::string& spec);

// Shared by the writers: every tensor of the source (in its stored dtype) except those in `skip`
// and those replaced, plus every replaced tensor (F32; shape from the source, else the matrix's
// own, a one-column matrix written 1-D).
class SafetensorsWriter;
void add_source_and_replaced_tensors(const Model& model, const std::map<std::string, Mat>& replaced,
                                     const std::function<bool(const std::string&)>& skip, SafetensorsWriter& w);

}  // namespace ptq
