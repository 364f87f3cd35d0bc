#pragma once
// The packed matmul kernels and their run-time dispatch.
//
// Arithmetic (identical in every path, so all paths agree bit for bit):
//   Activations are quantized per token and per 32-column block (after the gather through
//   source_col): d_b = max|x_b| / 127, x̂ = round(x / d_b) in int8 (see ActivationBlocks).
//   For each tile row r, group g:   gacc = Σ_b fma(d_b, float(Σ_{k∈b} code·x̂_k), gacc)
//                                   y_r  = fma(scale, fma(−zero, gsum_g, gacc), y_r)
//   where gsum_g = Σ_{b∈g} d_b·Σ_{k∈b} x̂_k, so the zero point costs one multiply per group and
//   the inner loop is an int8 dot product of codes (u8) with x̂ (s8): VNNI vpdpbusd on AVX-512,
//   vpmaddubsw + vpmaddwd on AVX2, plain integers in the scalar reference.
// Accuracy trade-off: the result is exactly Σ scale·(code − zero)·d·x̂ up to fp32 rounding, i.e.
// x · dequantize()ᵀ with x replaced by its int8 block quantization. Per element |x − d·x̂| ≤ d/2 =
// max|x_b| / 254, so the error is at most Σ_k |w_k|·max|x_b|/254 (≈ 1e-3 of Σ|x·w| for Gaussian
// activations, larger inside a block that holds an outlier channel). llama.cpp's Q8_0
// activations make the same trade.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/kernels/packed_layout.h"

namespace ptq::kernels {

// Activations of up to kMaxGemmTokens tokens, gathered into the packed column order and
// quantized to int8 per block.
struct ActivationBlocks {
  int tokens = 0, blocks = 0, groups = 0;
  std::vector<int8_t> q;           // [tokens][blocks * 32]
  std::vector<float> scale;        // [tokens][blocks]  d_b
  std::vector<float> group_sum;    // [tokens][groups]  Σ_{b∈g} d_b·Σ x̂
  const int8_t* token_q(int t) const { return q.data() + size_t(t) * blocks * kBlockCols; }
  const float* token_scale(int t) const { return scale.data() + size_t(t) * blocks; }
  const float* token_group_sum(int t) const { return group_sum.data() + size_t(t) * groups; }
};
ActivationBlocks quantize_activations(const PackedMatrix& m, const float* x, int tokens);
// d·x̂ in the original column order [tokens, cols]: what the kernels multiply W by.
std::vector<float> dequantize_activations(const PackedMatrix& m, const ActivationBlocks& a);

constexpr int kMaxGemmTokens = 64;

// A kernel computes y[t, row] for every token of `a` and the rows of tiles [tile_begin,
// tile_end); y is [a.tokens, m.rows] row-major. Kernels never throw and never allocate.
using TileKernel = void (*)(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end,
                            float* y);

// GEMV: a.tokens == 1. GEMM: 1..kMaxGemmTokens tokens.
void gemv_ref(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y);
void gemm_ref(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y);
void gemv_avx2(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y);
void gemm_avx2(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y);
void gemv_avx512(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y);
void gemm_avx512(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y);

enum class KernelPath { ref, avx2, avx512 };
std::string path_name(KernelPath p);
bool cpu_supports(KernelPath p);  // __builtin_cpu_supports at run time
// The path matmul uses: force_kernel_path's if set, else $PTQ_KERNEL (ref|avx2|avx512) if set,
// else the best the CPU supports. Throws ptq::Error for an unknown or unsupported forced path.
KernelPath active_kernel_path();
void force_kernel_path(std::optional<KernelPath> p);  // for tests and benchmarks; not thread-safe

TileKernel gemv_kernel(KernelPath p);
TileKernel gemm_kernel(KernelPath p);

// y [tokens, rows] = x [tokens, cols] · Wᵀ on `path`, OpenMP across tiles in fixed chunks (each
// output row is computed by one thread in a fixed order: bit-identical at any thread count).
void packed_matmul(const PackedMatrix& m, const float* x, int tokens, float* y, KernelPath path);

}  // namespace ptq::kernels
