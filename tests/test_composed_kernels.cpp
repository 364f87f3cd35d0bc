// The composed linear (formats/kernels/composed_kernels.h, make_composed_linear): the FWHT, x·B
// and CSR kernels on every path against their scalar twins bit for bit and against double
// references within named tolerances, and whole layers — Hadamard / dense / scale input
// transform, CSR residual, low-rank branch, each alone and all together, over integer-zero and
// float-offset grids — against x·effective_weight()ᵀ.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "formats/kernels/composed_kernels.h"
#include "formats/kernels/kernels.h"
#include "formats/kernels/packed_matmul.h"
#include "ptq/activation_quant.h"
#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq::kernels {
namespace {

// FWHT vs InputTransform::apply (fp64): |Δ_j| ≤ kFwhtTolerance·(|x|·|T|)_j. Each output is a ±
// sum of the block's inputs over log2 of the power-of-two factor's order butterfly levels plus
// m sequential adds per order-m dense factor, each rounding once in fp32: ≤ (depth + 2)·2^−24
// of (|x|·|T|)_j, depth ≤ 21 for the transforms here (2^7 · 12).
constexpr double kFwhtTolerance = 2e-6;
// A composed layer (int8x3 or fp32 arithmetic) vs x·effective_weight()ᵀ in double:
// |Δ_r| ≤ kComposedTolerance·A_r, A_r = Σ_k (|x|·|T|)_k·(|D + S|_rk + (|L1|·|L2|)_rk), the
// magnitude an fp32 evaluation of x·T·(D + S + L1·L2)ᵀ rounds relative to; also the x·B and CSR
// kernels vs double relative to Σ|x·b|.
constexpr double kComposedTolerance = 1e-5;
// The int8 arithmetic's activation quantization on the dense part (as in test_kernels.cpp).
constexpr double kActivationTolerance = 1e-2;

std::vector<KernelPath> simd_paths() { return {KernelPath::avx2, KernelPath::avx512}; }

uint64_t mix(uint64_t a, uint64_t b) { return a * 0x9E3779B97F4A7C15ull + b; }

float uniform(std::mt19937_64& rng) { return float(double(rng() >> 11) / 9007199254740992.0); }

std::vector<float> gaussian(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (auto& e : v) {
    // Box–Muller on our own uniform mapping (std distributions differ between libraries).
    const double u1 = (double(rng() >> 11) + 0.5) / 9007199254740992.0;
    const double u2 = (double(rng() >> 11) + 0.5) / 9007199254740992.0;
    e = float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  return v;
}

float fp16_exact(float v) { return f16_to_f32(f32_to_f16(v)); }

// 4-bit g128 codes; integer zero points, or additive offsets (float-offset tiles).
GridCodes random_grid(int rows, int cols, bool additive, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GridCodes q;
  q.rows = rows;
  q.cols = cols;
  q.grid.bits = 4;
  q.grid.group_size = 128;
  q.rule = additive ? OffsetRule::kAdditive : OffsetRule::kZeroPoint;
  const int groups = q.grid.num_groups(cols);
  q.q.resize(size_t(rows) * cols);
  for (auto& v : q.q) v = uint8_t(rng() % 16);
  q.scales.resize(rows, groups);
  q.zeros.resize(rows, groups);
  for (int r = 0; r < rows; ++r)
    for (int g = 0; g < groups; ++g) {
      q.scales(r, g) = fp16_exact(0.01f * (0.5f + uniform(rng)));
      q.zeros(r, g) = additive ? fp16_exact(-q.scales(r, g) * 15.0f * uniform(rng)) : float(rng() % 16);
    }
  q.g_idx.resize(cols);
  for (int c = 0; c < cols; ++c) q.g_idx[c] = c / 128;
  return q;
}

SparseResidual random_sparse(int rows, int cols, double density, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Mat d = Mat::Zero(rows, cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      if (uniform(rng) < density) d(r, c) = 0.05f * (uniform(rng) - 0.5f);
  // Rows with exactly 0, 1, 15, 16, 17 and 33 entries exercise the 16-chain tails.
  const int lengths[] = {0, 1, 15, 16, 17, 33};
  for (int i = 0; i < 6 && i < rows; ++i) {
    d.row(i).setZero();
    for (int c = 0; c < lengths[i] && c < cols; ++c) d(i, (c * 7) % cols) = 0.01f * float(c + 1);
  }
  return SparseResidual::from_dense(d);
}

LowRankBranch random_low_rank(int rows, int cols, int rank, uint64_t seed) {
  LowRankBranch l;
  const std::vector<float> a = gaussian(size_t(rows) * rank, seed), b = gaussian(size_t(rank) * cols, seed + 1);
  l.l1.resize(rows, rank);
  l.l2.resize(rank, cols);
  for (Eigen::Index i = 0; i < l.l1.size(); ++i) l.l1.data()[i] = fp16_exact(0.02f * a[i]);
  for (Eigen::Index i = 0; i < l.l2.size(); ++i) l.l2.data()[i] = fp16_exact(0.02f * b[i]);
  return l;
}

InputTransform hadamard(int size, std::vector<int> factors, uint64_t seed) {
  InputTransform t;
  t.kind = InputTransform::Kind::kHadamard;
  t.size = size;
  t.factors = std::move(factors);
  std::mt19937_64 rng(seed);
  t.signs.resize(size);
  for (auto& s : t.signs) s = (rng() & 1) ? 1 : -1;
  return t;
}

InputTransform dense_transform(int size, uint64_t seed) {
  InputTransform t;
  t.kind = InputTransform::Kind::kDense;
  t.size = size;
  const std::vector<float> g = gaussian(size_t(size) * size, seed);
  t.dense = Mat::Identity(size, size);
  for (Eigen::Index i = 0; i < t.dense.size(); ++i) t.dense.data()[i] += 0.1f * g[i];
  return t;
}

InputTransform scale_transform(int size, uint64_t seed) {
  InputTransform t;
  t.kind = InputTransform::Kind::kScale;
  t.size = size;
  std::mt19937_64 rng(seed);
  t.scale.resize(size);
  for (int i = 0; i < size; ++i) t.scale[i] = 0.5f + uniform(rng);
  return t;
}

// (|x|·|T|) per token row, in double.
MatD abs_transformed(const std::optional<InputTransform>& t, const Mat& x) {
  const MatD ax = x.cast<double>().cwiseAbs();
  if (!t) return ax;
  if (t->kind == InputTransform::Kind::kHadamard) {
    const int b = t->block();
    MatD out(ax.rows(), ax.cols());
    for (Eigen::Index r = 0; r < ax.rows(); ++r)
      for (int b0 = 0; b0 < t->size; b0 += b) out.row(r).segment(b0, b).setConstant(ax.row(r).segment(b0, b).sum() / std::sqrt(double(b)));
    return out;
  }
  return ax * t->matrix().cast<double>().cwiseAbs();
}

struct Expected {
  MatD y, bound;  // [tokens, rows]
};

// effective: layer.effective_weight(), computed once by the caller (it costs O(K·block) per row).
Expected expected_product(const QuantizedLayer& layer, const Mat& effective, const Mat& x, double tolerance) {
  Expected e;
  e.y = x.cast<double>() * effective.cast<double>().transpose();
  MatD magnitude = layer.grid.dequantize().cast<double>();
  if (layer.sparse) {
    Mat s = Mat::Zero(layer.rows(), layer.cols());
    layer.sparse->add_to(s);
    magnitude += s.cast<double>();
  }
  magnitude = magnitude.cwiseAbs();
  if (layer.low_rank) magnitude += layer.low_rank->l1.cast<double>().cwiseAbs() * layer.low_rank->l2.cast<double>().cwiseAbs();
  e.bound = tolerance * abs_transformed(layer.input_transform, x) * magnitude.transpose();
  return e;
}

void expect_within(const Mat& y, const Expected& e, const std::string& what) {
  for (Eigen::Index t = 0; t < y.rows(); ++t)
    for (Eigen::Index r = 0; r < y.cols(); ++r)
      ASSERT_LE(std::fabs(double(y(t, r)) - e.y(t, r)), e.bound(t, r) + 1e-30)
          << what << " token " << t << " row " << r << ": " << y(t, r) << " vs " << e.y(t, r);
}

bool same_bits(const Mat& a, const Mat& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * size_t(a.size())) == 0;
}

// ---- FWHT ----

struct FwhtCase {
  int size;
  std::vector<int> factors;
};

std::vector<FwhtCase> fwht_cases() {
  return {{4096, {4096}},      {1536, {128, 12}}, {3072, {128, 12}}, {48, {2, 12}},   {192, {12, 8}},
          {288, {12, 12}},     {1000, {8}},       {384, {16, 2, 4}}, {40, {20}},      {160, {4, 20}},
          {1560, {2, 12}},     {64, {64}},        {12, {12}},        {2, {2}}};
}

Mat run_transform(const PackedTransform& t, KernelPath path, const Mat& x) {
  Mat out(x.rows(), x.cols());
  transform_input(t, composed_kernels(path), x.data(), int(x.rows()), out.data());
  return out;
}

TEST(ComposedKernels, FwhtMatchesApplyAndSimdMatchesRefBitForBit) {
  for (const FwhtCase& c : fwht_cases()) {
    const InputTransform t = hadamard(c.size, c.factors, uint64_t(c.size));
    const PackedTransform packed = pack_transform("test", t, c.size);
    std::string name = "K " + std::to_string(c.size) + " factors";
    for (int f : c.factors) name.append(" ").append(std::to_string(f));
    for (int tokens : {1, 3}) {
      Mat x = Eigen::Map<const Mat>(gaussian(size_t(tokens) * c.size, 5).data(), tokens, c.size);
      x(0, 0) = 40.0f;  // an outlier channel
      const Mat ref = run_transform(packed, KernelPath::ref, x);
      const MatD expected = t.apply(x).cast<double>();
      const MatD scale = abs_transformed(t, x);
      for (Eigen::Index r = 0; r < x.rows(); ++r)
        for (int j = 0; j < c.size; ++j)
          ASSERT_LE(std::fabs(ref(r, j) - expected(r, j)), kFwhtTolerance * scale(r, j)) << name << " output " << j;
      for (KernelPath path : simd_paths()) {
        if (!cpu_supports(path)) {
          std::cout << "[ SKIPPED  ] " << path_name(path) << ": this CPU lacks it\n";
          continue;
        }
        ASSERT_TRUE(same_bits(ref, run_transform(packed, path, x))) << name << " " << path_name(path);
      }
    }
  }
}

// ---- x·B and CSR ----

TEST(ComposedKernels, XbSimdMatchesRefBitForBitAndDouble) {
  for (int depth : {1, 5, 32, 333})
    for (int width : {1, 7, 16, 17, 40, 63, 64, 65, 130})
      for (int tokens : {1, 2, 3, 4, 5, 9}) {
        const int ldb = pad_floats(width);
        std::vector<float> b(size_t(depth) * ldb, 0.0f);
        const std::vector<float> g = gaussian(size_t(depth) * width, mix(depth, width));
        for (int k = 0; k < depth; ++k)
          for (int n = 0; n < width; ++n) b[size_t(k) * ldb + n] = g[size_t(k) * width + n];
        const std::vector<float> x = gaussian(size_t(tokens) * depth, tokens);
        const std::vector<float> y0 = gaussian(size_t(tokens) * width, 3);
        for (bool accumulate : {false, true}) {
          const std::string what = "depth " + std::to_string(depth) + " width " + std::to_string(width) + " tokens " +
                                   std::to_string(tokens) + (accumulate ? " accumulate" : "");
          std::vector<float> ref = y0;
          xb_ref(x.data(), depth, tokens, depth, b.data(), ldb, 0, width, ref.data(), width, accumulate);
          for (int t = 0; t < tokens; ++t)
            for (int n = 0; n < width; ++n) {
              double e = accumulate ? y0[size_t(t) * width + n] : 0.0, mag = std::fabs(e);
              for (int k = 0; k < depth; ++k) {
                const double p = double(x[size_t(t) * depth + k]) * b[size_t(k) * ldb + n];
                e += p;
                mag += std::fabs(p);
              }
              ASSERT_LE(std::fabs(ref[size_t(t) * width + n] - e), kComposedTolerance * mag) << what;
            }
          // b rounded to fp16, held as fp16 bits and as floats: the same products.
          std::vector<uint16_t> half(b.size());
          for (size_t i = 0; i < b.size(); ++i) half[i] = f32_to_f16(b[i]);
          std::vector<float> b_rounded(b.size()), ref_rounded = y0, ref_half = y0;
          for (size_t i = 0; i < b.size(); ++i) b_rounded[i] = f16_to_f32(half[i]);
          xb_ref(x.data(), depth, tokens, depth, b_rounded.data(), ldb, 0, width, ref_rounded.data(), width, accumulate);
          xb_half_ref(x.data(), depth, tokens, depth, half.data(), ldb, 0, width, ref_half.data(), width, accumulate);
          ASSERT_EQ(0, std::memcmp(ref_rounded.data(), ref_half.data(), sizeof(float) * ref_half.size())) << what;
          for (KernelPath path : simd_paths()) {
            if (!cpu_supports(path)) continue;
            const ComposedKernels k = composed_kernels(path);
            std::vector<float> y = y0, y_half = y0;
            k.xb(x.data(), depth, tokens, depth, b.data(), ldb, 0, width, y.data(), width, accumulate);
            ASSERT_EQ(0, std::memcmp(ref.data(), y.data(), sizeof(float) * y.size())) << what << " " << path_name(path);
            k.xb_half(x.data(), depth, tokens, depth, half.data(), ldb, 0, width, y_half.data(), width, accumulate);
            ASSERT_EQ(0, std::memcmp(ref_half.data(), y_half.data(), sizeof(float) * y.size()))
                << what << " fp16 " << path_name(path);
          }
        }
      }
}

TEST(ComposedKernels, CsrAddSimdMatchesRefBitForBitAndDouble) {
  for (double density : {0.01, 0.3})
    for (int tokens : {1, 7, 64}) {
      const int rows = 70, cols = 300;
      const SparseResidual s = random_sparse(rows, cols, density, uint64_t(density * 1000) + tokens);
      const PackedSparse packed = pack_sparse("test", s, rows, cols);
      const std::vector<float> x = gaussian(size_t(tokens) * cols, 9);
      const std::vector<float> y0 = gaussian(size_t(tokens) * rows, 10);
      std::vector<float> ref = y0;
      csr_add_ref(packed, x.data(), nullptr, tokens, 0, rows, ref.data());
      const std::string what = "density " + std::to_string(density) + " tokens " + std::to_string(tokens);
      for (int t = 0; t < tokens; ++t)
        for (int r = 0; r < rows; ++r) {
          double e = y0[size_t(t) * rows + r], mag = std::fabs(e);
          for (int i = s.row_offsets[r]; i < s.row_offsets[r + 1]; ++i) {
            const double p = double(s.values[i]) * x[size_t(t) * cols + s.col_ids[i]];
            e += p;
            mag += std::fabs(p);
          }
          ASSERT_LE(std::fabs(ref[size_t(t) * rows + r] - e), kComposedTolerance * mag) << what << " row " << r;
        }
      for (KernelPath path : simd_paths()) {
        if (!cpu_supports(path)) continue;
        std::vector<float> y = y0;
        sparse_add(packed, composed_kernels(path), x.data(), tokens, y.data());
        ASSERT_EQ(0, std::memcmp(ref.data(), y.data(), sizeof(float) * y.size())) << what << " " << path_name(path);
      }
    }
}

// ---- whole layers ----

enum Part { kTransform = 1, kSparse = 2, kLowRank = 4 };

struct LayerCase {
  int rows, cols;
  InputTransform transform;
  std::string name;
};

std::vector<LayerCase> layer_cases() {
  return {{40, 1536, hadamard(1536, {128, 12}, 1), "40x1536 Hadamard 128·12"},
          {33, 1000, hadamard(1000, {8}, 2), "33x1000 Hadamard 8 (K not a multiple of 32)"},
          {48, 2048, hadamard(2048, {2048}, 3), "48x2048 Hadamard 2048"},
          {20, 172, dense_transform(172, 4), "20x172 dense T"},
          {24, 300, scale_transform(300, 5), "24x300 scale T"}};
}

QuantizedLayer make_layer(const LayerCase& c, int parts, bool additive) {
  QuantizedLayer l = QuantizedLayer::from_grid(random_grid(c.rows, c.cols, additive, uint64_t(c.cols) + additive));
  if (parts & kTransform) l.input_transform = c.transform;
  if (parts & kSparse) l.sparse = random_sparse(c.rows, c.cols, 0.01, uint64_t(c.rows));
  if (parts & kLowRank) l.low_rank = random_low_rank(c.rows, c.cols, 2, uint64_t(c.cols) * 3);
  return l;
}

std::string parts_name(int parts) {
  std::string s;
  if (parts & kTransform) s += "+transform";
  if (parts & kSparse) s += "+sparse";
  if (parts & kLowRank) s += "+rank-2";
  return s.empty() ? "grid only" : s.substr(1);
}

Mat run_layer(const QuantizedLayer& l, KernelPath path, ActivationArithmetic arithmetic, const Mat& x) {
  force_kernel_path(path);
  force_activation_arithmetic(arithmetic);
  const auto linear = make_composed_linear(l);
  force_kernel_path(std::nullopt);
  force_activation_arithmetic(std::nullopt);
  Mat y(x.rows(), l.rows());
  linear->matmul(x.data(), int(x.rows()), y.data());
  return y;
}

// Each part alone and all together, integer zeros and float offsets, tokens 1, 7, 64 and 70
// (more than one dense GEMM slice): within kComposedTolerance of x·effective_weight()ᵀ on the
// reference path, and every SIMD path bit-identical to it.
TEST(ComposedKernels, LayerMatchesEffectiveWeightEveryPartAndPath) {
  for (const LayerCase& c : layer_cases())
    for (int parts : {int(kTransform), int(kSparse), int(kLowRank), kTransform | kSparse | kLowRank})
      for (bool additive : {false, true}) {
        if ((parts & kTransform) == 0 && c.transform.kind != InputTransform::Kind::kHadamard) continue;
        const QuantizedLayer l = make_layer(c, parts, additive);
        const Mat effective = l.effective_weight();
        for (int tokens : {1, 7, 64, 70}) {
          const Mat x = Eigen::Map<const Mat>(gaussian(size_t(tokens) * c.cols, uint64_t(tokens)).data(), tokens, c.cols);
          const Expected e = expected_product(l, effective, x, kComposedTolerance);
          for (ActivationArithmetic arithmetic : {ActivationArithmetic::int8x3, ActivationArithmetic::fp32}) {
            const std::string what = c.name + " " + parts_name(parts) + (additive ? " additive" : " integer zeros") +
                                     " " + arithmetic_name(arithmetic) + " tokens " + std::to_string(tokens);
            const Mat ref = run_layer(l, KernelPath::ref, arithmetic, x);
            expect_within(ref, e, what + " ref");
            if (HasFatalFailure()) return;
            for (KernelPath path : simd_paths()) {
              if (!cpu_supports(path)) continue;
              ASSERT_TRUE(same_bits(ref, run_layer(l, path, arithmetic, x))) << what << " " << path_name(path);
            }
          }
        }
      }
}

// Every part large enough to run in parallel (Hadamard 4096, 5% CSR, rank 64, 64 tokens): 1 vs
// 2 threads and a rerun bit-identical, on every path.
TEST(ComposedKernels, OneAndTwoThreadsBitIdentical) {
  const int rows = 512, cols = 4096, tokens = 64;
  QuantizedLayer l = QuantizedLayer::from_grid(random_grid(rows, cols, false, 21));
  l.input_transform = hadamard(cols, {4096}, 22);
  l.sparse = random_sparse(rows, cols, 0.05, 23);
  l.low_rank = random_low_rank(rows, cols, 64, 24);
  const Mat x = Eigen::Map<const Mat>(gaussian(size_t(tokens) * cols, 25).data(), tokens, cols);
  for (KernelPath path : {KernelPath::ref, KernelPath::avx2, KernelPath::avx512}) {
    if (!cpu_supports(path)) continue;
    force_kernel_path(path);
    const auto linear = make_composed_linear(l);
    force_kernel_path(std::nullopt);
    Mat y1(tokens, rows), y2(tokens, rows);
    set_num_threads(1);
    linear->matmul(x.data(), tokens, y1.data());
    set_num_threads(2);
    linear->matmul(x.data(), tokens, y2.data());
    EXPECT_TRUE(same_bits(y1, y2)) << path_name(path) << " 1 vs 2 threads";
    linear->matmul(x.data(), tokens, y1.data());
    EXPECT_TRUE(same_bits(y1, y2)) << path_name(path) << " rerun";
  }
}

// A refiner's rank-2 branch, an outlier extractor's CSR and a Hadamard input transform on one
// layer at K = 1536: int8 arithmetic within its activation tolerance, and dequantize() ≈
// effective_weight().
TEST(ComposedKernels, AllPartsInt8AndDequantize) {
  const LayerCase c = layer_cases()[0];
  const QuantizedLayer l = make_layer(c, kTransform | kSparse | kLowRank, false);
  const auto linear = make_composed_linear(l);
  const int tokens = 64;
  const Mat x = Eigen::Map<const Mat>(gaussian(size_t(tokens) * c.cols, 11).data(), tokens, c.cols);
  const Mat expected = l.effective_weight();
  expect_within(run_layer(l, active_kernel_path(), ActivationArithmetic::int8, x),
                expected_product(l, expected, x, kActivationTolerance), "int8");

  const Mat w = linear->dequantize();
  ASSERT_EQ(w.rows(), c.rows);
  ASSERT_EQ(w.cols(), c.cols);
  // Row r of W is the layer applied to e_k: kComposedTolerance of its magnitude A_r(e_k).
  const Expected e = expected_product(l, expected, Mat::Identity(c.cols, c.cols), kComposedTolerance);
  for (int r = 0; r < c.rows; ++r)
    for (int k = 0; k < c.cols; ++k) ASSERT_LE(std::fabs(w(r, k) - expected(r, k)), e.bound(k, r)) << r << ", " << k;
}

// ---- activations on a recipe's per-token grid (act(...): matmul_quantized) ----

Mat run_layer_quantized(const QuantizedLayer& l, KernelPath path, const ActivationQuant& a, const Mat& x) {
  force_kernel_path(path);
  const auto linear = make_composed_linear(l);
  force_kernel_path(std::nullopt);
  Mat y(x.rows(), l.rows());
  linear->matmul_quantized(x.data(), int(x.rows()), a, y.data());
  return y;
}

// x̂: the layer's transform as the kernels compute it, then the core's fake quantization.
Mat quantized_input(const QuantizedLayer& l, KernelPath path, const ActivationQuant& a, const Mat& x) {
  Mat xt = l.input_transform ? run_transform(pack_transform("test", *l.input_transform, l.cols()), path, x) : x;
  quantize_activations(xt, a);
  return xt;
}

std::vector<ActivationQuant> grid_cases() {
  return {{8, false, 1.0}, {8, true, 1.0}, {4, false, 1.0}, {4, true, 1.0}, {8, false, 0.9}, {3, true, 0.8}};
}

// x̂·(D + S)ᵀ + x̃·(L1·L2)ᵀ in double, x̃ = T(x) and x̂ its quantization: the branch takes the
// unquantized input. Bound: tolerance·(|x̂|·|D + S|ᵀ + |x̃|·(|L1|·|L2|)ᵀ).
Expected expected_quantized(const QuantizedLayer& untransformed, const Mat& x_tilde, const Mat& x_hat, double tolerance) {
  QuantizedLayer dense = untransformed;
  dense.low_rank.reset();
  Expected e = expected_product(dense, dense.effective_weight(), x_hat, tolerance);
  if (const auto& l = untransformed.low_rank) {
    e.y += x_tilde.cast<double>() * l->product().cast<double>().transpose();
    e.bound += tolerance * x_tilde.cast<double>().cwiseAbs() *
               (l->l1.cast<double>().cwiseAbs() * l->l2.cast<double>().cwiseAbs()).transpose();
  }
  return e;
}

// Every part and both statistics kinds, symmetric and asymmetric grids of 3, 4 and 8 bits (asym
// 8-bit takes the offset term; clip < 1 reaches code −128): the integer path equals
// x̂·(D + S)ᵀ + x̃·(L1·L2)ᵀ in double within kComposedTolerance of its magnitude — the dense and
// sparse parts on the quantized input as the fake-quantized forward takes them, the branch on the
// unquantized one — and every SIMD path is bit-identical to the reference.
TEST(ComposedKernels, GridActivationsEqualTheFakeQuantizedProduct) {
  for (const LayerCase& c : layer_cases())
    for (int parts : {0, kTransform | kSparse | kLowRank})
      for (bool additive : {false, true}) {
        if (parts == 0 && c.transform.kind != InputTransform::Kind::kHadamard) continue;
        const QuantizedLayer l = make_layer(c, parts, additive);
        QuantizedLayer untransformed = l;
        untransformed.input_transform.reset();
        for (int tokens : {1, 7, 70}) {
          const Mat x = Eigen::Map<const Mat>(gaussian(size_t(tokens) * c.cols, uint64_t(tokens) + 5).data(), tokens, c.cols);
          for (const ActivationQuant& a : grid_cases()) {
            const std::string what = c.name + " " + parts_name(parts) + (additive ? " additive " : " integer zeros ") +
                                     activation_quant_spec(a) + " tokens " + std::to_string(tokens);
            const Mat ref = run_layer_quantized(l, KernelPath::ref, a, x);
            const Mat x_tilde = quantized_input(l, KernelPath::ref, ActivationQuant{}, x);
            const Mat x_hat = quantized_input(l, KernelPath::ref, a, x);
            expect_within(ref, expected_quantized(untransformed, x_tilde, x_hat, kComposedTolerance), what + " ref");
            if (HasFatalFailure()) return;
            for (KernelPath path : simd_paths()) {
              if (!cpu_supports(path)) continue;
              ASSERT_TRUE(same_bits(ref, run_layer_quantized(l, path, a, x))) << what << " " << path_name(path);
            }
          }
        }
      }
}

// A row of zeros gives zeros, a row holding inf or NaN gives NaN in every output, and the other
// tokens are unaffected; 1 and 2 threads bit-identical at a size that runs in parallel.
TEST(ComposedKernels, GridActivationsEdgeRowsAndThreads) {
  const int rows = 512, cols = 4096, tokens = 64;
  const QuantizedLayer l = QuantizedLayer::from_grid(random_grid(rows, cols, false, 31));
  Mat x = Eigen::Map<const Mat>(gaussian(size_t(tokens) * cols, 32).data(), tokens, cols);
  x.row(3).setZero();
  x(5, 17) = std::numeric_limits<float>::infinity();
  x(6, 100) = std::numeric_limits<float>::quiet_NaN();
  for (const ActivationQuant& a : {ActivationQuant{8, false, 1.0}, ActivationQuant{8, true, 1.0}}) {
    const auto linear = make_composed_linear(l);
    Mat y1(tokens, rows), y2(tokens, rows);
    set_num_threads(1);
    linear->matmul_quantized(x.data(), tokens, a, y1.data());
    set_num_threads(2);
    linear->matmul_quantized(x.data(), tokens, a, y2.data());
    EXPECT_TRUE(same_bits(y1, y2)) << activation_quant_spec(a) << " 1 vs 2 threads";
    EXPECT_TRUE(y1.row(3).isZero()) << activation_quant_spec(a);
    for (int t : {5, 6})
      for (int r = 0; r < rows; ++r) ASSERT_TRUE(std::isnan(y1(t, r))) << activation_quant_spec(a) << " token " << t;
    EXPECT_TRUE(y1.row(7).allFinite());
    Mat clean = x.bottomRows(tokens - 8);
    Mat y3(clean.rows(), rows);
    linear->matmul_quantized(clean.data(), int(clean.rows()), a, y3.data());
    EXPECT_TRUE(same_bits(y3, y1.bottomRows(tokens - 8))) << "tokens are independent";
  }
}

// Factors that are not fp16-exact (against the core's promise) are kept as float, not rounded.
TEST(ComposedKernels, LowRankFactorsNotFp16ExactStayFloat) {
  const LayerCase c{40, 1536, hadamard(1536, {128, 12}, 1), "40x1536"};
  QuantizedLayer l = make_layer(c, kLowRank, true);
  l.low_rank->l1 *= 1.0f + std::ldexp(1.0f, -20);
  EXPECT_FALSE(pack_low_rank("test", *l.low_rank, c.rows, c.cols).half);
  EXPECT_TRUE(pack_low_rank("test", random_low_rank(c.rows, c.cols, 2, 1), c.rows, c.cols).half);
  const int tokens = 7;
  const Mat x = Eigen::Map<const Mat>(gaussian(size_t(tokens) * c.cols, 4).data(), tokens, c.cols);
  const Mat ref = run_layer(l, KernelPath::ref, ActivationArithmetic::fp32, x);
  expect_within(ref, expected_product(l, l.effective_weight(), x, kComposedTolerance), "float factors");
  for (KernelPath path : simd_paths()) {
    if (!cpu_supports(path)) continue;
    EXPECT_TRUE(same_bits(ref, run_layer(l, path, ActivationArithmetic::fp32, x))) << path_name(path);
  }
}

TEST(ComposedKernels, MalformedPartsThrowNamedErrors) {
  const LayerCase c = layer_cases()[0];
  auto expect_error = [](const QuantizedLayer& l, const std::string& fragment) {
    try {
      make_composed_linear(l);
      ADD_FAILURE() << "expected an error mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  QuantizedLayer l = make_layer(c, kTransform | kSparse | kLowRank, false);
  l.sparse->col_ids[3] = c.cols;
  expect_error(l, "sparse column id");
  l = make_layer(c, kSparse, false);
  l.sparse->row_offsets.pop_back();
  expect_error(l, "row offsets");
  l = make_layer(c, kLowRank, false);
  l.low_rank->l2 = Mat::Zero(2, c.cols - 1);
  expect_error(l, "low-rank factors");
  l = make_layer(c, kTransform, false);
  l.input_transform->factors = {128, 7};
  expect_error(l, "unsupported Hadamard factor");
  l = make_layer(c, kTransform, false);
  l.input_transform->factors = {1024};
  expect_error(l, "does not divide");
  l = make_layer(c, kTransform, false);
  l.input_transform->signs.pop_back();
  expect_error(l, "signs");
  l = make_layer(c, kTransform, false);
  l.input_transform->size = 1024;
  expect_error(l, "input transform is for width");
}

}  // namespace
}  // namespace ptq::kernels
