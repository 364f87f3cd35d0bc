#include "ptq/module_probe.h"

#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq {

bool group_has_module(LinearInput group) { return group == LinearInput::kQKV || group == LinearInput::kGateUp; }

ModuleProbe::ModuleProbe(const ModelConfig& cfg, const RopeTable& rope, const BlockWeights& w, LinearInput group,
                         std::vector<Mat> inputs)
    : cfg_(cfg), rope_(rope), group_(group), inputs_(std::move(inputs)) {
  PTQ_ASSERT(group_has_module(group), "the probe is for groups feeding attention or the MLP");
  for (const auto& name : linear_short_names(group)) layers_.push_back(*w.linear(name));
  after_ = group == LinearInput::kQKV ? w.o : w.down;
  std::vector<const Linear*> now;
  for (const Linear& l : layers_) now.push_back(&l);
  reference_.resize(inputs_.size());
  parallel_for_each(inputs_.size(), [&](size_t i) { reference_[i] = output(now, inputs_[i]); });
  for (const Mat& x : inputs_) tokens_ += x.rows();
}

Mat ModuleProbe::output(const std::vector<const Linear*>& l, const Mat& x) const {
  const Mat inner = group_ == LinearInput::kQKV ? attention_context(cfg_, rope_, KvQuant{}, *l[0], *l[1], *l[2], x)
                                                : swiglu(*l[0], *l[1], x);
  return after_.forward(inner);
}

double ModuleProbe::error(const std::vector<const Mat*>& candidate) const {
  PTQ_ASSERT(candidate.size() == layers_.size());
  std::vector<Linear> swapped(layers_.size());
  std::vector<const Linear*> ptrs;
  for (size_t i = 0; i < swapped.size(); ++i) {
    PTQ_ASSERT(candidate[i]->rows() == layers_[i].rows() && candidate[i]->cols() == layers_[i].cols());
    swapped[i].w = *candidate[i];
    swapped[i].bias = layers_[i].bias;
    swapped[i].input_transform = layers_[i].input_transform;
    swapped[i].branch = layers_[i].branch;
    ptrs.push_back(&swapped[i]);
  }
  std::vector<double> per_window(inputs_.size());
  parallel_for_each(inputs_.size(), [&](size_t i) {
    per_window[i] = (output(ptrs, inputs_[i]) - reference_[i]).cast<double>().squaredNorm();
  });
  double total = 0;
  for (double e : per_window) total += e;
  return total;
}

}  // namespace ptq
