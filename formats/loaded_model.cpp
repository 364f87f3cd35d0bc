#include "formats/loaded_model.h"

#include <map>

#include "formats/checkpoint_writer.h"
#include "formats/kernels/packed_matmul.h"

namespace ptq {
namespace {

// Dense grids run on the packed tiles; layers with more parts on the composed kernel.
std::shared_ptr<const PackedLinear> kernel_for(const QuantizedLayer& q) {
  const bool dense_grid = !q.sparse && !q.low_rank && !q.input_transform;
  return dense_grid ? make_packed_linear(q.grid) : make_composed_linear(q);
}

}  // namespace

LoadedModel load_model_for_inference(const std::string& path) {
  Model model = Model::open(path);
  const FormatTraits* format = detect_format(path);
  if (!format || !format->read_layers) {
    auto forward = std::make_shared<const LlamaModel>(model);
    return LoadedModel{std::move(model), std::move(forward)};
  }
  const std::map<std::string, QuantizedLayer> layers = format->read_layers(model);
  std::vector<BlockWeights> blocks;
  // Layers the recipe kept in full precision (and norms, biases) load as usual.
  auto packed_for = [&](const std::string& module) -> std::shared_ptr<const PackedLinear> {
    auto it = layers.find(module);
    return it == layers.end() ? nullptr : kernel_for(it->second);
  };
  for (int l = 0; l < model.config().num_layers; ++l)
    blocks.push_back(BlockWeights::load(model, l, packed_for));
  auto forward = std::make_shared<const LlamaModel>(model.config(), HeadWeights::load(model), std::move(blocks));
  return LoadedModel{std::move(model), std::move(forward)};
}

}  // namespace ptq
