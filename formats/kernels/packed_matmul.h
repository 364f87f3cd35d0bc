#pragma once
// Packed quantized weight x fp32 activation products: the kernels that run packed checkpoints.
// make_packed_linear validates a quantized matrix (throws ptq::Error), builds the kernel-side
// layout once (formats/kernels/packed_layout.h: act-order columns regrouped at load, not per
// call) and returns it behind ptq::PackedLinear; matmul runs the best SIMD path the CPU has
// (formats/kernels/kernels.h, docs/kernels.md).
#include <memory>

#include "ptq/quantized_layer.h"
#include "ptq/linear.h"

namespace ptq {

std::shared_ptr<const PackedLinear> make_packed_linear(const GridCodes& q);

}  // namespace ptq
