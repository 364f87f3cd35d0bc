#include "formats/loaded_model.h"

#include <map>

#include "formats/checkpoint_writer.h"
#include "formats/kernels/packed_matmul.h"

namespace ptq {
namespace {

// Until the composed kernel serves layers with parts beyond a dense grid: their effective weight
// as a dense fp32 matmul.
class DenseLayer final : public PackedLinear {
 public:
  explicit DenseLayer(const QuantizedLayer& q) : w_(q.effective_weight()) {}
  int rows() const override { return int(w_.rows()); }
  int cols() const override { return int(w_.cols()); }
  void matmul(const float* x, int tokens, float* y) const override {
    Eigen::Map<const Mat> xm(x, tokens, w_.cols());
    Eigen::Map<Mat> ym(y, tokens, w_.rows());
    ym.noalias() = xm * w_.transpose();
  }
  Mat dequantize() const override { return w_; }

 private:
  Mat w_;
};

std::shared_ptr<const PackedLinear> kernel_for(const QuantizedLayer& q) {
  const bool dense_grid = !q.sparse && !q.low_rank && !q.input_transform && q.grid.integer_zeros();
  if (dense_grid) return make_packed_linear(q.grid);
  return std::make_shared<DenseLayer>(q);
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
