#pragma once
// Opening any model ptq can run: an fp checkpoint (any source Model::open reads) or a ptq output
// directory. Quantized formats (formats/checkpoint_writer.h's table: ptq, gptq, awq) run their
// layers on the kernels — dense grids on the packed tiles, layers with more parts on the composed
// kernel; fake-quant outputs are ordinary dense checkpoints.
#include <memory>
#include <optional>
#include <string>

#include "ptq/activation_quant.h"
#include "ptq/forward.h"
#include "ptq/model.h"

namespace ptq {

struct LoadedModel {
  Model model;
  std::shared_ptr<const LlamaModel> forward;
  RuntimeQuant activations;  // what the block linear layers apply to their inputs, and attention to its cache
};

// `llama_cpp_activations` (GGUF files only): every linear layer and the lm_head round their inputs
// as llama.cpp's CPU backend does for the tensor's type (ptq/linear.h InputRounding): 8-bit
// blocks of 32 for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, fp16 / bf16 for F16 / BF16, nothing for F32. Throws
// Error for a type whose activation rounding is not emulated (the K-quants' Q8_K).
//
// Activation and KV-cache quantization (ptq/activation_quant.h): `activations` when given, else
// the act(...) and kv(...) stages of the recipe the checkpoint's metadata records (none for a
// checkpoint ptq did not write), set on every block and its linear layers. Packed layers then run
// PackedLinear::matmul_quantized: their online input transform first, so the transformed input is
// what gets quantized, then the dense tiles on the integer grid (W4A8 on the int8 kernels).
LoadedModel load_model_for_inference(const std::string& path, bool llama_cpp_activations = false,
                                     const std::optional<RuntimeQuant>& activations = std::nullopt);

// The recipe a ptq checkpoint records (ptq.recipe in the safetensors or GGUF metadata); "" when
// it records none.
std::string checkpoint_recipe(const std::string& path);

}  // namespace ptq
