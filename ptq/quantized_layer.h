#pragma once
// QuantizedLayer: everything a quantization recipe produces for one linear layer y = x Wᵀ
// (W [N out, K in]), in parts that formats and kernels consume without knowing the method:
//
//   y = T(x) · (D + S + L1·L2)ᵀ
//
//   D   dense grid part (GridCodes): integer codes with per-group statistics,
//         kZeroPoint rule  w = scale·(code − zero)   GPTQ/AWQ/RTN integer zero points, SpQR's
//                                                    fractional zeros, GGUF Q4_0/Q8_0/Q6_K
//         kAdditive rule   w = scale·code + offset   GGUF Q4_1/Q4_K minimums (fp16 offsets)
//       Both rules are evaluated exactly as written (two fp32 roundings, never fused), so what
//       effective_weight() returns is what a decoder of the stored statistics computes.
//       Optional coded statistics store `scale` / `zero` themselves as codes of a second grid
//       (SpQR's 3-bit scales and zeros per 16 rows, Q4_K's 6-bit sub-scales per super-block);
//       their decoded values equal the float statistics bit for bit.
//   S   optional sparse residual, CSR over the original columns, fp16 values: added to D.
//   L   optional low-rank branch L1 [N, r] · L2 [r, K] (fp16 values), added to D.
//   T   optional input transform applied to x at inference (x → x·T): a block-diagonal
//       Hadamard built from Kronecker factors (12·2^p, 2^p, ...), a dense matrix, or a
//       per-channel scale. D, S and L live in the transformed basis.
//
// Every float a part holds is exactly representable in its storage type (fp16 values are
// fp16-exact floats), so a format writes the parts losslessly and a reader rebuilds the same
// layer. This header depends only on the tensor types: the core, algorithms, formats and
// kernels all include it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ptq/tensor.h"

namespace ptq {

// Uniform integer grid. Asymmetric: code = clamp(round(w/scale) + zero, 0, 2^bits−1),
// w' = scale·(code − zero). Symmetric: zero = 2^(bits−1) fixed. group_size −1 = one group per
// row. Groups run along K in the column order g_idx gives.
struct QuantGrid {
  int bits = 4;
  int group_size = 128;
  bool sym = false;
  bool mse = false;  // search a shrunk range per group (GPTQ's `mse` option)
  // Scales (and fractional zero points) are rounded to fp16 as they are fitted, so the codes and
  // the error feedback use exactly what an fp16 format stores. Set by an output format's
  // GridConstraints, not by spec strings.
  bool fp16_stats = false;
  // Asymmetric zero points are fitted in [min_zero, max_q]: GPTQ v1 stores zero − 1 and readers
  // outside ptq add 1 back without wrapping, so that format needs zero ≥ 1. Set by an output
  // format's GridConstraints, not by spec strings.
  int min_zero = 0;
  // Groups store an additive offset (w = scale·code + offset, GGUF Q4_1/Q5_1's minimum) instead
  // of a zero point; asymmetric only. Set by an output format's GridConstraints, not by spec
  // strings.
  bool additive = false;
  // Symmetric groups scaled by their signed extreme, as ggml's Q4_0/Q5_0 quantizers do: the value
  // of largest magnitude m sits exactly on the extreme level, scale = m / −2^(bits−1) (negative
  // when m > 0), so the other side reaches (2^(bits−1) − 1)/2^(bits−1) of |m|. Set by an output
  // format's GridConstraints, not by spec strings.
  bool signed_extreme = false;
  // K-quant super-blocks (GGUF Q2_K..Q6_K): every `super_groups` consecutive groups share a second
  // level, and each group's scale (and additive offset) is stored as a `sub_bits`-bit code of it:
  // scale = d·c with c in [1, 2^sub_bits − 1] (asymmetric grids) or d·(c − 2^(sub_bits−1)), c ≠
  // 2^(sub_bits−1) (symmetric ones, d scaled by the signed extreme as for signed_extreme), offset =
  // −dmin·c' (c' in [0, 2^sub_bits − 1], so offsets are ≤ 0); d and dmin are fp16. 0: no super-blocks.
  // Set by an output format's GridConstraints, not by spec strings.
  int super_groups = 0;
  int sub_bits = 0;
  int super_width() const { return group_size * (super_groups > 0 ? super_groups : 1); }
  // Number of groups for K columns; K ≥ 1 and group_size ≥ 1 or −1 (validated at parse time),
  // computed without overflow for any int group size.
  int num_groups(int k) const {
    return group_size <= 0 || group_size >= k ? 1 : int((int64_t(k) + group_size - 1) / group_size);
  }
  int max_q() const { return (1 << bits) - 1; }
};

enum class OffsetRule : uint8_t {
  kZeroPoint = 0,  // w = scale·(code − zero)
  kAdditive = 1,   // w = scale·code + offset
};
const char* offset_rule_name(OffsetRule r);  // "zero_point", "additive"

// A per-group statistic [N, G] stored as codes of its own grid: value(r, g) =
// scale2(r / row_block, g / group_block) · (code(r, g) − zero2(...)). SpQR: row_block 16,
// group_block 1 (3-bit codes per 16 output rows); Q4_K: row_block 1, group_block 8 (6-bit codes
// per 256-weight super-block). scale2/zero2 are fp16-exact.
struct CodedStatistic {
  int bits = 0;
  int row_block = 1, group_block = 1;
  bool stored_zero2 = true;    // false: zero2 is the constant implied_zero2, not stored (K-quants)
  float implied_zero2 = 0.0f;  // Q4_K's sub-scales 0; Q6_K's int8 sub-scales as codes c + 128: 128
  std::vector<uint8_t> codes;  // [N, G]
  Mat scale2, zero2;           // [ceil(N/row_block), ceil(G/group_block)]
  float decode(int r, int g, int groups) const {
    const float s = scale2(r / row_block, g / group_block), z = zero2(r / row_block, g / group_block);
    return s * (static_cast<float>(codes[size_t(r) * groups + g]) - z);
  }
};

// The dense grid part.
struct GridCodes {
  int rows = 0, cols = 0;      // N, K
  QuantGrid grid;
  OffsetRule rule = OffsetRule::kZeroPoint;
  std::vector<uint8_t> q;      // [N, K] codes, column order of the original W
  Mat scales;                  // [N, G]
  Mat zeros;                   // [N, G] zero points (kZeroPoint) or additive offsets (kAdditive)
  std::vector<int32_t> g_idx;  // [K] group of each input column
  std::optional<CodedStatistic> coded_scales, coded_zeros;  // storage of scales / zeros, if coded

  float value(int r, int c) const {
    const int g = g_idx[c];
    const float code = static_cast<float>(q[size_t(r) * cols + c]);
    return rule == OffsetRule::kZeroPoint ? scales(r, g) * (code - zeros(r, g))
                                          : scales(r, g) * code + zeros(r, g);
  }
  Mat dequantize() const;  // [N, K]
  // True when every zero is an integer in [0, 2^bits − 1] under kZeroPoint: the layouts of
  // GPTQ/AWQ checkpoints and the packed kernels' integer zero points can hold them.
  bool integer_zeros() const;
  bool natural_order() const;  // g_idx[c] == c / group_size for every column
};

// Added to the dense part: CSR over rows; column ids index the stored weight's columns (never an
// act-order permutation), ascending within each row, no duplicates. values are fp16-exact.
struct SparseResidual {
  std::vector<int32_t> row_offsets;  // [N + 1]
  std::vector<int32_t> col_ids;      // [nnz]
  std::vector<float> values;         // [nnz]
  int64_t nnz() const { return int64_t(values.size()); }
  void add_to(Mat& w) const;
  // Builds the CSR of every nonzero of `dense` [N, K], values rounded to fp16.
  static SparseResidual from_dense(const Mat& dense);
};

// W += L1·L2. Stored in fp16 (bits 16; values fp16-exact).
struct LowRankBranch {
  Mat l1;  // [N, r]
  Mat l2;  // [r, K]
  int bits = 16;
  int rank() const { return int(l1.cols()); }
  Mat product() const;  // L1·L2 [N, K], accumulated in fp64, rounded once to fp32
};

// x → x·T, applied to a layer's input at inference. Orthogonal kinds satisfy T⁻¹ = Tᵀ.
struct InputTransform {
  enum class Kind : uint8_t { kHadamard = 0, kDense = 1, kScale = 2 };
  Kind kind = Kind::kHadamard;
  int size = 0;  // K
  // kHadamard: T = diag(signs) · (H_{f0} ⊗ H_{f1} ⊗ ...) / sqrt(size) over `block`-wide
  // diagonal blocks (block = product of factors; size a multiple of block). Each factor is 2^p
  // (Sylvester) or one of the known orders (hadamard_factor_supported). signs ±1 [size] or empty.
  std::vector<int> factors;
  std::vector<int8_t> signs;
  Mat dense;  // kDense: T [size, size]
  Vec scale;  // kScale: T = diag(scale)

  int block() const;
  Mat apply(const Mat& x) const;  // x [tokens, size] → x·T (reference implementation, fp64 accumulation)
  Mat matrix() const;             // T [size, size]
  // W' such that T(x)·W'ᵀ = x·Wᵀ: W' = W·T⁻ᵀ. Exact inverse for the orthogonal kinds and the
  // scale; a dense T is inverted by LU in fp64.
  Mat fold_into_weight(const Mat& w) const;
  // W·Tᵀ: the weight in the original basis of a layer whose stored weight is w.
  Mat unfold_from_weight(const Mat& w) const;
};
// Orders a Hadamard factor may have besides powers of two (Paley constructions).
bool hadamard_factor_supported(int order);
// The ±1 Hadamard matrix of `order` (Sylvester for 2^p, Paley I for 12, 20, ...); rows orthogonal.
Mat hadamard_matrix(int order);
// Kronecker factors for a block of `size`: a power of two times at most the known orders, largest
// power of two first; empty when `size` has no such decomposition.
std::vector<int> hadamard_factors(int size);

// One stored tensor of a layer: name suffix (e.g. "grid.codes"), dtype, shape, little-endian bytes.
struct LayerTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

struct QuantizedLayer {
  GridCodes grid;
  std::optional<SparseResidual> sparse;
  std::optional<LowRankBranch> low_rank;
  std::optional<InputTransform> input_transform;

  int rows() const { return grid.rows; }
  int cols() const { return grid.cols; }
  // D + S + L1·L2: the weight in the basis the quantizer saw (that of T(x)).
  Mat stored_weight() const;
  // The layer's weight for untransformed inputs: stored_weight()·Tᵀ. What fake-quant writes
  // and what the pipeline propagates to later blocks.
  Mat effective_weight() const;
  // Exact bits of every stored part (docs/architecture.md, "Storage bits"): codes, statistics
  // (fp16, integer zero points at `bits`, or coded statistics with their second level), g_idx
  // when not in natural order, CSR row offsets/column ids/values, branch factors, transform.
  double storage_bits() const;
  double bits_per_weight() const { return storage_bits() / (double(rows()) * double(cols())); }
  // Which parts are present, e.g. "grid+sparse+low_rank" — for refusals and logs.
  std::string part_names() const;

  // Every part as named tensors plus a JSON descriptor of the scalars (bits, group, rule, ...);
  // from_tensors rebuilds an equal layer and throws Error naming `where` on anything malformed.
  std::vector<LayerTensor> to_tensors() const;
  std::string descriptor() const;
  static QuantizedLayer from_tensors(const std::string& where, const std::string& descriptor,
                                     const std::vector<LayerTensor>& tensors);
  // A layer holding only a dense grid.
  static QuantizedLayer from_grid(GridCodes g);
};

bool operator==(const GridCodes& a, const GridCodes& b);
bool operator==(const QuantizedLayer& a, const QuantizedLayer& b);

}  // namespace ptq
