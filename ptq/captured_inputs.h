#pragma once
// Linear-layer inputs captured outside the pipeline's own forward pass (a calibration HDF5 file,
// calibration/activation_file.h, whatever model produced it): what independent mode quantizes
// from.
#include <string>

#include "ptq/input_stats.h"
#include "ptq/model.h"

namespace ptq {

class CapturedInputs {
 public:
  virtual ~CapturedInputs() = default;
  // Throws Error when the captures cannot belong to a model of this architecture.
  virtual void check_fits(const ModelConfig& cfg) const = 0;
  // The statistics of the input that `module` (an HF module name) reads, accumulated one
  // calibration window per batch as the sequential pipeline feeds them. Throws Error naming the
  // module when nothing was captured for it.
  virtual InputStats input_stats(const std::string& module) const = 0;
};

}  // namespace ptq
