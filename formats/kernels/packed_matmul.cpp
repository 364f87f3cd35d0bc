#include "formats/kernels/packed_matmul.h"

#include <algorithm>

#include "formats/kernels/kernels.h"

namespace ptq {
namespace kernels {

namespace {

// Tiles per OpenMP task. Every output row is produced by exactly one kernel call whatever the
// split, so the chunking and which thread runs a task affect speed only, never the bits of y.
// Dynamic scheduling lets a running thread take the tasks of one that the OS has descheduled
// (the 2 cores here are shared).
constexpr int kTilesPerTask = 4;
// Below this many block-tiles (16 rows × 32 columns each) a call is too small to share.
constexpr long kMinParallelBlockTiles = 2048;

template <class Kernel, class Activations>
void run_tiles(Kernel kernel, const PackedMatrix& m, const Activations& a, float* y) {
  const int tasks = (m.tiles + kTilesPerTask - 1) / kTilesPerTask;
  const bool parallel = long(m.tiles) * m.blocks * a.tokens >= kMinParallelBlockTiles && tasks > 1;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int task = 0; task < tasks; ++task)
    kernel(m, a, task * kTilesPerTask, std::min(m.tiles, (task + 1) * kTilesPerTask), y);
}

}  // namespace

void packed_matmul(const PackedMatrix& m, const float* x, int tokens, float* y, const DenseKernels& k) {
  for (int t0 = 0; t0 < tokens; t0 += kMaxGemmTokens) {
    const int n = std::min(kMaxGemmTokens, tokens - t0);
    const float* xt = x + size_t(t0) * m.cols;
    float* yt = y + size_t(t0) * m.rows;
    switch (k.arithmetic) {
      case ActivationArithmetic::fp32: run_tiles(k.tiles.fp32, m, gather_activations(m, xt, n), yt); break;
      case ActivationArithmetic::int8x3: run_tiles(k.tiles.int8x3, m, split_activations(m, xt, n), yt); break;
      case ActivationArithmetic::int8: run_tiles(k.tiles.int8, m, quantize_activations(m, xt, n), yt); break;
    }
  }
}

void packed_matmul(const PackedMatrix& m, const float* x, int tokens, float* y, KernelPath path,
                   ActivationArithmetic arithmetic) {
  packed_matmul(m, x, tokens, y, DenseKernels{tile_kernels(path, m), arithmetic});
}

}  // namespace kernels

namespace {

// The kernel-side layout and the kernels chosen for it when it was built (active_kernel_path /
// $PTQ_KERNEL, active_activation_arithmetic / $PTQ_KERNEL_ACT).
class KernelPackedLinear final : public PackedLinear {
 public:
  explicit KernelPackedLinear(kernels::PackedMatrix m) : m_(std::move(m)) {
    dense_ = {kernels::tile_kernels(kernels::active_kernel_path(), m_), kernels::active_activation_arithmetic()};
  }
  int rows() const override { return m_.rows; }
  int cols() const override { return m_.cols; }
  Mat dequantize() const override { return kernels::dequantize(m_); }
  void matmul(const float* x, int tokens, float* y) const override { kernels::packed_matmul(m_, x, tokens, y, dense_); }

 private:
  kernels::PackedMatrix m_;
  kernels::DenseKernels dense_;
};

}  // namespace

std::shared_ptr<const PackedLinear> make_packed_linear(const GridCodes& q) {
  return std::make_shared<KernelPackedLinear>(kernels::pack_matrix(q));
}

}  // namespace ptq
