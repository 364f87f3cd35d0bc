#pragma once
// Packed quantized weight x fp32 activation products: the kernels that run packed checkpoints.
// make_packed_linear validates a quantized matrix (throws ptq::Error), builds the kernel-side
// layout once (formats/kernels/packed_layout.h: act-order columns regrouped at load, not per
// call) and returns it behind ptq::PackedLinear; make_composed_linear does the same for a whole
// QuantizedLayer: input transform, dense tiles, CSR sparse part and low-rank branch
// (formats/kernels/composed_kernels.h). Both choose the kernel path ($PTQ_KERNEL, else the
// best the CPU has) and the activation arithmetic ($PTQ_KERNEL_ACT, else int8x3) once, when
// they are built; matmul then calls the stored kernels (formats/kernels/kernels.h,
// docs/kernels.md).
#include <memory>

#include "ptq/linear.h"
#include "ptq/quantized_layer.h"

namespace ptq {

// The dense-only case: y = x·q.dequantize()ᵀ.
std::shared_ptr<const PackedLinear> make_packed_linear(const GridCodes& q);
// y = T(x)·(D + S + L1·L2)ᵀ = x·layer.effective_weight()ᵀ, whichever parts the layer has.
// dequantize() returns the dense grid's weight exactly for a grid-only layer, else the
// effective weight as the matmul computes it (fp32 arithmetic, applied to the identity).
std::shared_ptr<const PackedLinear> make_composed_linear(const QuantizedLayer& layer);

}  // namespace ptq
