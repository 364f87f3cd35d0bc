#pragma once
// The packed matmul kernels and their run-time dispatch. Three activation arithmetics exist;
// the first two agree with x · dequantize()ᵀ to fp32 rounding level, the third does not.
//
// int8x3 (the DEFAULT): x split per 32-column block into three int8 digits (SplitActivations),
//   x̂ = d_b·(q₀ + q₁·2^−7 + q₂·2^−14), |x − x̂| ≤ max|x_b|·2^−22 (fp32 rounding of the block
//   max). Per block three integer dot products D_k = Σ code·q_k (VNNI vpdpbusd / vpmaddubsw /
//   plain ints, all exact), then
//     gacc = fma(d_b, fma(fma(D₂, 2^−7, D₁), 2^−7, D₀), gacc)
//     y_r  = fma(scale, fma(−zero, xsum_g, gacc), y_r)        xsum_g = Σ_{p∈g} x_p
//   Measured error vs double 1e-8–1.2e-7 of Σ|x·w| (docs/kernels.md), as fp32; it runs 24 vpdpbusd
//   (64 multiply-adds each) per 16×32 block-tile instead of 32 FMAs + 64 conversion ops, so the
//   GEMV is ~1.6× faster than the fp32 one.
//
// fp32 ($PTQ_KERNEL_ACT=fp32): exact up to fp32 summation order.
//   Activations are only gathered into the packed column order (FloatActivations); codes are
//   converted to f32 in registers. For each tile row r, group g, with p running over the
//   group's padded positions in order and i = p mod 4 (the column within a quad):
//     a_i   = fma(float(code_p), x_p, a_i)       four chains, a_i = +0 at the group start
//     accq  = (a_0 + a_1) + (a_2 + a_3)
//     y_r   = fma(scale, fma(−zero, xsum_g, accq), y_r)
//   where xsum_g = Σ_{p∈g} x_p (sequential fp32 adds, computed once per token). So the zero
//   point costs one multiply per group and the inner loop is one FMA per weight. Error vs
//   x · dequantize()ᵀ in double: fp32 rounding only (tested ≤ 1e-5 of Σ|x·w|; ~1e-7 typical).
//   The AVX-512 path masks codes in place (code·2^e, e = the code's bit offset in its 32-bit
//   lane, converted by vcvtudq2ps) and multiplies by x·2^−e (FloatActivations::x_shifted):
//   the same exact product, so all paths agree bit for bit unless |x| < 2^−96 (x·2^−e would be
//   subnormal).
//
// int8 (opt-in: $PTQ_KERNEL_ACT=int8 or force_activation_arithmetic): fastest, less exact.
//   Activations are quantized per token and per 32-column block (after the gather through
//   source_col): d_b = max|x_b| / 127, x̂ = round(x / d_b) in int8 (see ActivationBlocks).
//   For each tile row r, group g:   gacc = Σ_b fma(d_b, float(Σ_{k∈b} code·x̂_k), gacc)
//                                   y_r  = fma(scale, fma(−zero, gsum_g, gacc), y_r)
//   where gsum_g = Σ_{b∈g} d_b·Σ_{k∈b} x̂_k, so the inner loop is an int8 dot product of codes
//   (u8) with x̂ (s8): VNNI vpdpbusd on AVX-512, vpmaddubsw + vpmaddwd on AVX2, plain integers
//   in the scalar reference.
//   Accuracy trade-off: the result is exactly Σ scale·(code − zero)·d·x̂ up to fp32 rounding,
//   i.e. x · dequantize()ᵀ with x replaced by its int8 block quantization. Per element
//   |x − d·x̂| ≤ d/2 = max|x_b| / 254, so the error is at most Σ_k |w_k|·max|x_b|/254 (≈ 1e-3 of
//   Σ|x·w| for Gaussian activations, larger inside a block that holds an outlier channel):
//   enough to move a model's perplexity by ~1e-3 relative. llama.cpp's Q8_0 activations make
//   the same trade.
// Within one arithmetic the fp32 operations are the same, in the same order, in every path.
//
// Float offsets (OffsetParams, packed_layout.h: additive grids, fractional zero points): the
// group update of every arithmetic becomes
//     y_r = fma(offset, xsum_g, fma(scale, acc, y_r))       (xsum_g = gsum_g for int8)
// with acc the arithmetic's group accumulator (accq / gacc above): the same code, one FMA more
// per group and row.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/kernels/packed_layout.h"
#include "ptq/activation_quant.h"

namespace ptq::kernels {

// The shape the three activation layouts share: tokens × the matrix's padded columns (blocks ·
// 32) and groups.
struct ActivationShape {
  int tokens = 0, blocks = 0, groups = 0;
  ActivationShape(const PackedMatrix& m, int t) : tokens(t), blocks(m.blocks), groups(m.groups) {}
  size_t width() const { return size_t(blocks) * kBlockCols; }     // padded columns per token
  size_t values() const { return size_t(tokens) * width(); }       // [tokens][width]
  size_t per_block() const { return size_t(tokens) * blocks; }     // [tokens][blocks]
  size_t per_group() const { return size_t(tokens) * groups; }     // [tokens][groups]
};

// Activations of up to kMaxGemmTokens tokens, gathered into the packed column order and
// quantized to int8 per block.
struct ActivationBlocks : ActivationShape {
  ActivationBlocks(const PackedMatrix& m, int t)
      : ActivationShape(m, t), q(values(), 0), scale(per_block(), 0.0f), group_sum(per_group(), 0.0f) {}
  std::vector<int8_t> q;           // [tokens][blocks * 32]
  std::vector<float> scale;        // [tokens][blocks]  d_b
  std::vector<float> group_sum;    // [tokens][groups]  Σ_{b∈g} d_b·Σ x̂
  const int8_t* token_q(int t) const { return q.data() + size_t(t) * blocks * kBlockCols; }
  const float* token_scale(int t) const { return scale.data() + size_t(t) * blocks; }
  const float* token_group_sum(int t) const { return group_sum.data() + size_t(t) * groups; }
};
ActivationBlocks quantize_activations(const PackedMatrix& m, const float* x, int tokens);

// Activations a recipe quantizes per token (act(...), ptq/activation_quant.h: x̂ = s_t·(q − z_t))
// laid out for the same int8 kernels, every block of token t scaled by d_b = s_t, so the
// integer dot products run on the grid itself (W4A8, and W4A4 in int8 lanes):
//   v = q − z_t, which fits int8 for symmetric grids and asymmetric ones up to 7 bits;
//   asym 8-bit (q − z spans ±255): v = q − 128 and the token's offset o_t = s_t·(128 − z_t),
//   x̂ = s_t·v + o_t, so y_r gains o_t·Σ_c W[r, c] (packed_matmul_grid adds it).
// |v| ≤ 128 keeps the AVX2 int16 accumulation in bounds (8·2·15·128 < 2^15).
struct GridActivations {
  ActivationBlocks blocks;
  std::vector<float> offset;  // [tokens] o_t (all 0 unless asym 8-bit)
  std::vector<float> x_hat;   // [tokens, cols] x̂ in the original order, when asked for
};
GridActivations grid_activations(const PackedMatrix& m, const float* x, int tokens, const ActivationQuant& a,
                                 bool keep_x_hat);
// d·x̂ in the original column order [tokens, cols]: what the kernels multiply W by.
std::vector<float> dequantize_activations(const PackedMatrix& m, const ActivationBlocks& a);

// Activations of up to kMaxGemmTokens tokens gathered into the packed column order (padding
// = 0), for the fp32 arithmetic.
struct FloatActivations : ActivationShape {
  FloatActivations(const PackedMatrix& m, int t)
      : ActivationShape(m, t), x(values(), 0.0f), x_shifted(values(), 0.0f), xsum(per_group(), 0.0f) {}
  std::vector<float> x;          // [tokens][blocks * 32]
  std::vector<float> x_shifted;  // [tokens][blocks * 32]  x·2^−e (AVX-512 decode, see above)
  std::vector<float> xsum;       // [tokens][groups]  Σ_{p∈g} x_p, sequential
  const float* token_x(int t) const { return x.data() + size_t(t) * blocks * kBlockCols; }
  const float* token_x_shifted(int t) const { return x_shifted.data() + size_t(t) * blocks * kBlockCols; }
  const float* token_xsum(int t) const { return xsum.data() + size_t(t) * groups; }
};
FloatActivations gather_activations(const PackedMatrix& m, const float* x, int tokens);
// e of padded column c (0..31) of a block for `bits`: the bit offset of its code within the
// 32-bit lane of the 64-byte vector the AVX-512 fp32 decoder masks it from (4-bit: two quads
// per vector, low then high nibble; 2-bit: four quads per vector; 3-bit is decoded to one byte
// per code first; 8-bit is one byte per code).
constexpr int code_bit_offset(int bits, int c) {
  const int lane_byte = c % kQuadCols, quad = c / kQuadCols;
  if (bits == 4) return 8 * lane_byte + 4 * (quad % 2);
  if (bits == 2) return 8 * lane_byte + 2 * (quad % 4);
  return 8 * lane_byte;
}

// Activations split into three int8 digits per 32-column block, for the int8x3 arithmetic:
// x ≈ d_b·(q₀ + q₁/2^7 + q₂/2^14), d_b = max|x_b|/127, each q_k = round of the previous residual
// (|q₀| ≤ 127, |q₁|, |q₂| ≤ 64), so |x − x̂| ≤ d_b·2^−15 = max|x_b|·2^−22 per element.
constexpr int kDigits = 3;
constexpr int kDigitBits = 7;
struct SplitActivations : ActivationShape {
  SplitActivations(const PackedMatrix& m, int t)
      : ActivationShape(m, t), digit{std::vector<int8_t>(values(), 0), std::vector<int8_t>(values(), 0),
                                     std::vector<int8_t>(values(), 0)},
        scale(per_block(), 0.0f), xsum(per_group(), 0.0f) {}
  std::vector<int8_t> digit[kDigits];  // [tokens][blocks * 32] each
  std::vector<float> scale;            // [tokens][blocks]  d_b
  std::vector<float> xsum;             // [tokens][groups]  Σ_{p∈g} x_p, sequential
  const int8_t* token_digit(int k, int t) const { return digit[k].data() + size_t(t) * blocks * kBlockCols; }
  const float* token_scale(int t) const { return scale.data() + size_t(t) * blocks; }
  const float* token_xsum(int t) const { return xsum.data() + size_t(t) * groups; }
};
SplitActivations split_activations(const PackedMatrix& m, const float* x, int tokens);

constexpr int kMaxGemmTokens = 64;

// Block b of one token's x in the packed column order (padding = 0); returns max |x| over it,
// or NaN when the block holds an inf or NaN: such a block gets scale NaN and zero digits, so
// every output it feeds is NaN (as x·Wᵀ would be) and no non-finite value is rounded to an
// integer. Shared by the three activation preparations (activations.cpp).
float gather_block(const PackedMatrix& m, const float* x, int b, float out[kBlockCols]);

// A kernel computes y[t, row] for every token of `a` and the rows of tiles [tile_begin,
// tile_end); y is [a.tokens, m.rows] row-major. Kernels never throw and never allocate. Each
// serves any token count 1..kMaxGemmTokens.
using TileKernel = void (*)(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end,
                            float* y);                                                   // int8
using FloatTileKernel = void (*)(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end,
                                 float* y);                                              // fp32
using SplitTileKernel = void (*)(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end,
                                 float* y);                                              // int8x3

// Scalar references (gemm_ref.cpp): any bit width and either statistics kind, decoded through
// block_code. The SIMD kernels (one template per arithmetic over a vector-traits type,
// simd_kernels.h, instantiated for AVX2 and AVX-512 in kernels_avx{2,512}.cpp) perform the
// same integer sums and fp32 operations in the same order, so every path agrees bit for bit.
void gemm_ref(const PackedMatrix& m, const ActivationBlocks& a, int tile_begin, int tile_end, float* y);
void gemm_f32_ref(const PackedMatrix& m, const FloatActivations& a, int tile_begin, int tile_end, float* y);
void gemm_split_ref(const PackedMatrix& m, const SplitActivations& a, int tile_begin, int tile_end, float* y);

enum class KernelPath { ref, avx2, avx512 };
std::string path_name(KernelPath p);
bool cpu_supports(KernelPath p);  // __builtin_cpu_supports at run time
// The path the packed linears use: force_kernel_path's if set, else $PTQ_KERNEL
// (ref|avx2|avx512) if set, else the best the CPU supports. Throws ptq::Error for an unknown or
// unsupported forced path. Read when a linear is built (make_packed_linear,
// make_composed_linear), never per matmul.
KernelPath active_kernel_path();
void force_kernel_path(std::optional<KernelPath> p);  // for tests and benchmarks; not thread-safe

enum class ActivationArithmetic { fp32, int8x3, int8 };
std::string arithmetic_name(ActivationArithmetic a);
// The arithmetic the packed linears use: force_activation_arithmetic's if set, else
// $PTQ_KERNEL_ACT (int8x3|fp32|int8) if set, else int8x3. Throws ptq::Error for an unknown
// name. Read when a linear is built, like active_kernel_path.
ActivationArithmetic active_activation_arithmetic();
void force_activation_arithmetic(std::optional<ActivationArithmetic> a);  // tests/benchmarks; not thread-safe

// The tile kernels of one path, already specialised for one matrix's bit width and statistics
// kind (resolved once; null for a path the build lacks).
struct TileKernels {
  TileKernel int8 = nullptr;
  FloatTileKernel fp32 = nullptr;
  SplitTileKernel int8x3 = nullptr;
};
TileKernels tile_kernels(KernelPath p, const PackedMatrix& m);
TileKernels ref_tile_kernels(int bits, bool float_offsets);  // gemm_ref.cpp; any bits and kind
TileKernels avx2_tile_kernels(int bits, bool float_offsets);    // kernels_avx2.cpp
TileKernels avx512_tile_kernels(int bits, bool float_offsets);  // kernels_avx512.cpp

// A matrix with its kernels chosen: what a packed linear holds.
struct DenseKernels {
  TileKernels tiles;
  ActivationArithmetic arithmetic = ActivationArithmetic::int8x3;
};

// y [tokens, rows] = x [tokens, cols] · Wᵀ with the chosen kernels, OpenMP across tiles in fixed
// chunks (each output row is computed by one thread in a fixed order: bit-identical at any
// thread count).
void packed_matmul(const PackedMatrix& m, const float* x, int tokens, float* y, const DenseKernels& k);
// y = x̂·Wᵀ with x̂ = x quantized per token as `a` says, on the int8 tile kernel (GridActivations):
// Σ scale·(code − zero)·s_t·v up to fp32 rounding, i.e. the fake-quantized forward's product.
// row_sums[r] = Σ_c W[r, c] (row_sums()), read only for asymmetric 8-bit grids. x_hat, unless
// null, receives x̂ [tokens, cols] for the layer's sparse and low-rank parts.
void packed_matmul_grid(const PackedMatrix& m, const float* x, int tokens, const ActivationQuant& a,
                        const TileKernels& k, const std::vector<float>& row_sums, float* y, float* x_hat);
// Σ_c W[r, c] per row, on the fp32 arithmetic.
std::vector<float> row_sums(const PackedMatrix& m, const TileKernels& k);
// The same on `path` with `arithmetic` (resolves the kernels first; tests and benchmarks).
void packed_matmul(const PackedMatrix& m, const float* x, int tokens, float* y, KernelPath path,
                   ActivationArithmetic arithmetic = ActivationArithmetic::int8x3);

}  // namespace ptq::kernels
