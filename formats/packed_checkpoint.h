#pragma once
// Packed checkpoints (formats "gptq" and "awq"): an HF directory whose quantized linear layers
// are stored as packed int32 codes, fp16 scales and packed zero points (formats/packed_layout.h,
// docs/formats.md) instead of `<module>.weight`; every other tensor is copied as stored, except
// tensors a transform replaced, which are written as F32.
//
// config.json carries `quantization_config` (the layout's HF fields plus a "ptq" object:
// format, recipe, and per packed layer its true [rows, cols], bits, group_size, sym). The
// safetensors __metadata__ carries formats/metadata.h's provenance plus `ptq.format` and
// `ptq.shapes` (JSON {module: [rows, cols]}: the true shapes, since packing pads).
#include <map>
#include <memory>
#include <string>

#include "formats/checkpoint_writer.h"
#include "formats/packed_layout.h"
#include "ptq/model.h"

namespace ptq {

std::unique_ptr<CheckpointWriter> make_packed_writer(const FormatTraits& traits, const PackedLayout& layout);

// The layout named by `dir`/config.json's quantization_config; nullptr for an fp or fake-quant
// directory (or a file).
const PackedLayout* packed_layout_of(const std::string& dir);

// Every packed linear layer of a packed checkpoint opened as a Model, by module name
// (e.g. model.layers.0.self_attn.q_proj), unpacked to codes, fp16-exact scales, zeros, g_idx.
// Throws Error naming the file and tensor on anything malformed or not a packed checkpoint.
std::map<std::string, QuantizedLayer> read_packed_layers(const Model& model);
std::map<std::string, QuantizedLayer> read_packed_checkpoint(const std::string& dir);

}  // namespace ptq
