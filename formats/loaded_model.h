#pragma once
// Opening any model ptq can run: an fp checkpoint (any source Model::open reads) or a ptq output
// directory. Quantized formats (formats/checkpoint_writer.h's table: ptq, gptq, awq) run their
// layers on the kernels — dense grids on the packed tiles, layers with more parts on the composed
// kernel; fake-quant outputs are ordinary dense checkpoints.
#include <memory>
#include <string>

#include "ptq/forward.h"
#include "ptq/model.h"

namespace ptq {

struct LoadedModel {
  Model model;
  std::shared_ptr<const LlamaModel> forward;
};

// `llama_cpp_activations` (GGUF files only): every linear layer and the lm_head round their inputs
// as llama.cpp's CPU backend does for the tensor's type (ptq/linear.h InputRounding): 8-bit
// blocks of 32 for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, fp16 / bf16 for F16 / BF16, nothing for F32. Throws
// Error for a type whose activation rounding is not emulated (the K-quants' Q8_K).
LoadedModel load_model_for_inference(const std::string& path, bool llama_cpp_activations = false);

}  // namespace ptq
