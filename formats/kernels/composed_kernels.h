#pragma once
// The parts of a composed linear besides the dense tiles (ptq/quantized_layer.h:
// y = T(x)·(D + S + L1·L2)ᵀ), as kernel-side layouts built once at load and the kernels that
// run them. make_composed_linear (packed_matmul.h) runs, per call:
//   (a) x̃ = T(x)       input transform: Kronecker Hadamard (butterflies + small dense ±1
//                       factors), dense GEMM, or per-channel scale
//   (b) y  = x̃·Dᵀ      the packed tiles (kernels.h)
//   (c) y += x̃·Sᵀ      CSR sparse add
//   (d) y += (x̃·L2ᵀ)·L1ᵀ  low-rank branch, fp32
//
// Layouts (K = cols, N = rows, r = rank, pad(n) = n rounded up to a multiple of 16 floats):
//   PackedHadamard  signs float [K] (±1; empty = all +1); per factor of order m a row-major
//                   ±1 matrix float [m][pad(m)] (Paley factors only; powers of two run as
//                   butterflies and store nothing); norm = fp32(1/√block)
//   dense T         float [K][pad(K)], zero-padded columns
//   scale           float [K]
//   PackedSparse    row_offsets int32 [N+1], col_ids int32 [nnz], values float [nnz]
//   PackedLowRank   l2t = L2ᵀ [K][pad(r)], l1t = L1ᵀ [r][pad(N)], zero-padded, as fp16 bits
//                   (uint16, 2 bytes a value) when every factor value is fp16-exact, as the
//                   core's LowRankBranch promises, else as float
// The padding lets the SIMD kernels load whole vectors of B without masks.
//
// Arithmetic (the same fp32 operations in the same order in ref, AVX2 and AVX-512, so all
// paths and thread counts agree bit for bit):
//   FWHT   per token and diagonal block: v = x·signs; for each factor k in order, acting on
//          axis k of the block viewed as [f0, f1, ...] (outer × order × inner):
//            power of two 2^p: stages s = 0..p−1, h = inner·2^s, pairs (e, e+h) with e's
//              stage bit clear: (a, b) → (a + b, a − b)
//            other order m: v'[o, j, n] = Σ_i fma(v[o, i, n], M[i, j], ·), i ascending from +0
//          then out = v·norm.
//   x·B    y[t, n] = Σ_k fma(x[t, k], B[k, n], ·), k ascending from +0; y = that, or y + that.
//          Dense transform: B = T; low-rank: u = x̃·L2ᵀ (B = l2t), then y += u·L1ᵀ (B = l1t).
//          fp16 B is converted exactly (vcvtph2ps) before its FMA: the same products.
//   CSR    per (token, row): 16 chains, the row's i-th entry (from its start) going to chain
//          i mod 16: c = fma(value, x̃[col], c); then s8_l = c_l + c_{l+8}, s4_l = s8_l + s8_{l+4},
//          s2_l = s4_l + s4_{l+2}, s = s2_0 + s2_1; y += s (rows without entries are left alone).
//          One token gathers x̃[col] 16 at a time; several tokens are transposed first into
//          blocks of V::kLanes tokens, [cols][lanes], and each entry is one FMA for all of them.
#include <cstdint>
#include <vector>

#include "formats/kernels/kernels.h"
#include "ptq/quantized_layer.h"

namespace ptq::kernels {

constexpr int kPadFloats = 16;
constexpr int pad_floats(int n) { return (n + kPadFloats - 1) / kPadFloats * kPadFloats; }

struct HadamardFactor {
  int order = 0, outer = 0, inner = 0;  // the block viewed as [outer, order, inner]
  bool power_of_two = false;
  int stride = 0;                       // pad(order): row stride of matrix
  std::vector<float> matrix;            // [order][stride] ±1, zero padding; empty for 2^p
};

struct PackedHadamard {
  int size = 0, block = 0;
  std::vector<HadamardFactor> factors;
  std::vector<float> signs;  // [size] or empty
  float norm = 1.0f;
};

struct PackedTransform {
  InputTransform::Kind kind = InputTransform::Kind::kHadamard;
  int size = 0;
  PackedHadamard hadamard;
  int dense_stride = 0;
  std::vector<float> dense;  // [size][dense_stride]
  std::vector<float> scale;  // [size]
};

struct PackedSparse {
  int rows = 0, cols = 0;
  std::vector<int32_t> row_offsets;  // [rows + 1]
  std::vector<int32_t> col_ids;      // [nnz]
  std::vector<float> values;         // [nnz]
};

struct PackedLowRank {
  int rows = 0, cols = 0, rank = 0;
  int rank_stride = 0, rows_stride = 0;  // pad(rank), pad(rows)
  bool half = true;                      // factors held as fp16 bits (else as float)
  std::vector<uint16_t> l2t_half, l1t_half;  // [cols][rank_stride], [rank][rows_stride]
  std::vector<float> l2t, l1t;               // the same, when not fp16-exact
  size_t bytes() const { return 2 * (l2t_half.size() + l1t_half.size()) + 4 * (l2t.size() + l1t.size()); }
};

// Validate (throwing ptq::Error naming `where` and what is wrong) and build the layouts.
PackedTransform pack_transform(const std::string& where, const InputTransform& t, int cols);
PackedSparse pack_sparse(const std::string& where, const SparseResidual& s, int rows, int cols);
PackedLowRank pack_low_rank(const std::string& where, const LowRankBranch& l, int rows, int cols);

// One token's Hadamard transform, x [size] → out [size]; scratch holds `block` floats.
using FwhtKernel = void (*)(const PackedHadamard& h, const float* x, float* out, float* scratch);
// y[t·ldy + n] = (accumulate ? y + : ) Σ_k x[t·ldx + k]·b[k·ldb + n] for t < tokens, n in
// [n_begin, n_end); n_begin a multiple of 16, b's rows readable up to pad(n_end).
using XbKernel = void (*)(const float* x, int ldx, int tokens, int depth, const float* b, int ldb, int n_begin,
                          int n_end, float* y, int ldy, bool accumulate);
using XbHalfKernel = void (*)(const float* x, int ldx, int tokens, int depth, const uint16_t* b, int ldb, int n_begin,
                              int n_end, float* y, int ldy, bool accumulate);  // b: fp16 bits
// y[t·rows + r] += S_r · x[t·cols + ·] for t < tokens, r in [row_begin, row_end). x_blocks is
// null or x transposed into blocks of csr_lanes tokens ([tokens / lanes][cols][lanes], zero
// lanes past the last token; transpose_tokens), which the SIMD kernels use for several tokens.
using CsrKernel = void (*)(const PackedSparse& s, const float* x, const float* x_blocks, int tokens, int row_begin,
                           int row_end, float* y);

void fwht_ref(const PackedHadamard& h, const float* x, float* out, float* scratch);
void xb_ref(const float* x, int ldx, int tokens, int depth, const float* b, int ldb, int n_begin, int n_end, float* y,
            int ldy, bool accumulate);
void xb_half_ref(const float* x, int ldx, int tokens, int depth, const uint16_t* b, int ldb, int n_begin, int n_end,
                 float* y, int ldy, bool accumulate);
void csr_add_ref(const PackedSparse& s, const float* x, const float* x_blocks, int tokens, int row_begin, int row_end,
                 float* y);

struct ComposedKernels {
  FwhtKernel fwht = nullptr;
  XbKernel xb = nullptr;
  XbHalfKernel xb_half = nullptr;
  CsrKernel csr = nullptr;
  int csr_lanes = 0;  // tokens per transposed block the CSR kernel takes; 0: it reads x only
};
// x [tokens, cols] → blocks of `lanes` tokens, [blocks][cols][lanes].
std::vector<float> transpose_tokens(const float* x, int tokens, int cols, int lanes);
ComposedKernels composed_kernels(KernelPath p);
ComposedKernels ref_composed_kernels();
ComposedKernels avx2_composed_kernels();    // kernels_avx2.cpp
ComposedKernels avx512_composed_kernels();  // kernels_avx512.cpp

// The parallel drivers (fixed chunks; every output element is produced by one kernel call in a
// fixed order, so results do not depend on the thread count).
// out [tokens, size] = T(x [tokens, size]).
void transform_input(const PackedTransform& t, const ComposedKernels& k, const float* x, int tokens, float* out);
// y [tokens, rows] += x̃·Sᵀ.
void sparse_add(const PackedSparse& s, const ComposedKernels& k, const float* x, int tokens, float* y);
// y [tokens, rows] += (x̃·L2ᵀ)·L1ᵀ.
void low_rank_add(const PackedLowRank& l, const ComposedKernels& k, const float* x, int tokens, float* y);

}  // namespace ptq::kernels
