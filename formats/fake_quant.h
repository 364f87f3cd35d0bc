#pragma once
// The fake-quant output: an HF directory whose quantized linear weights hold their dequantized
// values (F32); every other tensor is copied in its stored dtype. `ptq eval` and any HF loader
// read it as an ordinary model. The safetensors __metadata__ carries the provenance
// (formats/metadata.h).
#include <map>
#include <string>

#include "formats/output_dir.h"
#include "ptq/model.h"
#include "ptq/tensor.h"

namespace ptq {

// Registered as format "fake" (formats/checkpoint_writer.h).

// config.json for the output: the source's own config.json (when it has one) with `extra`
// merged in at the top level, else the parsed ModelConfig. `untied`: a transform wrote an
// lm_head of its own for a model whose source ties it to the embedding (a rotation that fused
// the final norm), so the output says tie_word_embeddings false.
std::string output_config_json(const Model& model, const std::string& extra_key,
                               const std::string& extra_json, bool untied);
// True when `replaced` (the tensors transforms rewrote) holds an lm_head for a tied source.
bool untied_by_transform(const Model& model, const std::map<std::string, Mat>& replaced);

}  // namespace ptq
