#pragma once
// Packed quantized weight x fp32 activation products: the kernels that run packed checkpoints.
// make_packed_linear builds the kernel-side representation of a quantized matrix once (act-order
// columns regrouped at load, not per call) and returns it behind ptq::PackedLinear.
#include <memory>

#include "algorithms/quantizer.h"
#include "ptq/linear.h"

namespace ptq {

std::shared_ptr<const PackedLinear> make_packed_linear(const QuantizedWeight& q);

}  // namespace ptq
