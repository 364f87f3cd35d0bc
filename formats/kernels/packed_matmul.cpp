#include "formats/kernels/packed_matmul.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "formats/kernels/composed_kernels.h"
#include "formats/kernels/kernels.h"
#include "ptq/error.h"

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

void packed_matmul_grid(const PackedMatrix& m, const float* x, int tokens, const ActivationQuant& a,
                        const TileKernels& k, const std::vector<float>& row_sums, float* y, float* x_hat) {
  for (int t0 = 0; t0 < tokens; t0 += kMaxGemmTokens) {
    const int n = std::min(kMaxGemmTokens, tokens - t0);
    const GridActivations g = grid_activations(m, x + size_t(t0) * m.cols, n, a, x_hat != nullptr);
    float* yt = y + size_t(t0) * m.rows;
    run_tiles(k.int8, m, g.blocks, yt);
    for (int t = 0; t < n; ++t) {
      if (g.offset[t] == 0.0f) continue;
      PTQ_ASSERT(row_sums.size() == size_t(m.rows), "row sums for an asymmetric 8-bit activation grid");
      float* yr = yt + size_t(t) * m.rows;
      for (int r = 0; r < m.rows; ++r) yr[r] = std::fma(g.offset[t], row_sums[r], yr[r]);
    }
    if (x_hat) std::copy(g.x_hat.begin(), g.x_hat.end(), x_hat + size_t(t0) * m.cols);
  }
}

std::vector<float> row_sums(const PackedMatrix& m, const TileKernels& k) {
  const std::vector<float> ones(size_t(m.cols), 1.0f);
  std::vector<float> sums(size_t(m.rows));
  packed_matmul(m, ones.data(), 1, sums.data(), DenseKernels{k, ActivationArithmetic::fp32});
  return sums;
}

void packed_matmul(const PackedMatrix& m, const float* x, int tokens, float* y, KernelPath path,
                   ActivationArithmetic arithmetic) {
  packed_matmul(m, x, tokens, y, DenseKernels{tile_kernels(path, m), arithmetic});
}

}  // namespace kernels

namespace {

// The kernel-side layouts of a layer's parts and the kernels chosen for them when it was built
// (active_kernel_path / $PTQ_KERNEL, active_activation_arithmetic / $PTQ_KERNEL_ACT).
class ComposedPackedLinear final : public PackedLinear {
 public:
  ComposedPackedLinear(kernels::PackedMatrix m, std::optional<kernels::PackedTransform> transform,
                       std::optional<kernels::PackedSparse> sparse, std::optional<kernels::PackedLowRank> low_rank)
      : m_(std::move(m)), transform_(std::move(transform)), sparse_(std::move(sparse)), low_rank_(std::move(low_rank)) {
    const kernels::KernelPath path = kernels::active_kernel_path();
    dense_ = {kernels::tile_kernels(path, m_), kernels::active_activation_arithmetic()};
    composed_ = kernels::composed_kernels(path);
    row_sums_ = kernels::row_sums(m_, dense_.tiles);
  }
  int rows() const override { return m_.rows; }
  int cols() const override { return m_.cols; }

  void matmul(const float* x, int tokens, float* y) const override { run(x, tokens, y, dense_); }

  // T first (x·T is what gets quantized), then the dense tiles on the grid's integers, the
  // sparse part on x̂ and the low-rank branch on the unquantized x·T (SVDQuant runs its branch
  // on 16-bit activations: only D + S is the low-precision product).
  void matmul_quantized(const float* x, int tokens, const ActivationQuant& a, float* y) const override {
    std::vector<float> transformed;
    if (transform_) {
      transformed.resize(size_t(tokens) * m_.cols);
      kernels::transform_input(*transform_, composed_, x, tokens, transformed.data());
      x = transformed.data();
    }
    std::vector<float> x_hat(sparse_ ? size_t(tokens) * m_.cols : 0);
    float* x_hat_out = x_hat.empty() ? nullptr : x_hat.data();
    kernels::packed_matmul_grid(m_, x, tokens, a, dense_.tiles, row_sums_, y, x_hat_out);
    if (sparse_) kernels::sparse_add(*sparse_, composed_, x_hat.data(), tokens, y);
    if (low_rank_) kernels::low_rank_add(*low_rank_, composed_, x, tokens, y);
  }

  Mat dequantize() const override {
    if (!transform_ && !sparse_ && !low_rank_) return kernels::dequantize(m_);
    // y = x·Wᵀ with x = I gives y = Wᵀ.
    const Mat identity = Mat::Identity(m_.cols, m_.cols);
    Mat wt(m_.cols, m_.rows);
    run(identity.data(), m_.cols, wt.data(), {dense_.tiles, kernels::ActivationArithmetic::fp32});
    return wt.transpose();
  }

 private:
  void run(const float* x, int tokens, float* y, const kernels::DenseKernels& dense) const {
    std::vector<float> transformed;
    if (transform_) {
      transformed.resize(size_t(tokens) * m_.cols);
      kernels::transform_input(*transform_, composed_, x, tokens, transformed.data());
      x = transformed.data();
    }
    kernels::packed_matmul(m_, x, tokens, y, dense);
    if (sparse_) kernels::sparse_add(*sparse_, composed_, x, tokens, y);
    if (low_rank_) kernels::low_rank_add(*low_rank_, composed_, x, tokens, y);
  }

  kernels::PackedMatrix m_;
  std::optional<kernels::PackedTransform> transform_;
  std::optional<kernels::PackedSparse> sparse_;
  std::optional<kernels::PackedLowRank> low_rank_;
  kernels::DenseKernels dense_;
  kernels::ComposedKernels composed_;
  std::vector<float> row_sums_;  // Σ_c W[r, c]: asymmetric 8-bit activation grids' offset term
};

}  // namespace

std::shared_ptr<const PackedLinear> make_packed_linear(const GridCodes& q) {
  return std::make_shared<ComposedPackedLinear>(kernels::pack_matrix(q), std::nullopt, std::nullopt, std::nullopt);
}

std::shared_ptr<const PackedLinear> make_composed_linear(const QuantizedLayer& layer) {
  const int rows = layer.rows(), cols = layer.cols();
  const std::string where = "composed layer [" + std::to_string(rows) + "x" + std::to_string(cols) + "]";
  kernels::PackedMatrix m = kernels::pack_matrix(layer.grid);
  std::optional<kernels::PackedTransform> transform;
  std::optional<kernels::PackedSparse> sparse;
  std::optional<kernels::PackedLowRank> low_rank;
  if (layer.input_transform) transform = kernels::pack_transform(where, *layer.input_transform, cols);
  if (layer.sparse) sparse = kernels::pack_sparse(where, *layer.sparse, rows, cols);
  if (layer.low_rank) low_rank = kernels::pack_low_rank(where, *layer.low_rank, rows, cols);
  return std::make_shared<ComposedPackedLinear>(std::move(m), std::move(transform), std::move(sparse), std::move(low_rank));
}

}  // namespace ptq
