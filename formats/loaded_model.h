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

LoadedModel load_model_for_inference(const std::string& path);

}  // namespace ptq
