#pragma once
// Weight transforms: stages of a recipe that run before the quantizer (`awq+gptq(w4,g128)`:
// awq is a transform, gptq the quantizer). A transform rewrites one linear group into a
// mathematically equivalent form that quantizes better (AWQ scales, SmoothQuant, rotations):
// it may change the group's weights, the operation that produces their input (an RMSNorm gain
// or the rows of a preceding linear layer), and must keep the group's InputStats describing the
// transformed input. Run in full precision, the transformed block gives the same outputs.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "algorithms/quantizer.h"
#include "algorithms/spec.h"
#include "ptq/linear.h"

namespace ptq {

struct GroupContext {
  std::string input_name;            // e.g. model.layers.3 qkv
  std::vector<std::string> names;    // HF module names of `layers`
  std::vector<Linear*> layers;       // the layers reading this input (dense weights)
  Vec* prev_norm = nullptr;          // RMSNorm gain producing the input, or nullptr
  Linear* prev_linear = nullptr;     // linear layer producing the input (rows scale), or nullptr
  InputStats* stats = nullptr;       // statistics of the input, updated by the transform
  const WeightQuantizer* quantizer = nullptr;  // how the layers will be quantized afterwards
};

class WeightTransform {
 public:
  virtual ~WeightTransform() = default;
  virtual std::string spec() const = 0;
  virtual void apply(GroupContext& group, QuantLog* log) const = 0;
};

using TransformFactory = std::function<std::unique_ptr<WeightTransform>(const Spec&)>;
void register_transform(const std::string& name, TransformFactory f);
bool is_transform(const std::string& name);
std::unique_ptr<WeightTransform> make_transform(const Spec& spec);  // Error if unknown

struct TransformRegistrar {
  TransformRegistrar(const std::string& name, TransformFactory f) { register_transform(name, f); }
};

}  // namespace ptq
