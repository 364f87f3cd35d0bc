// Packed matmul kernels (formats/kernels), all activation arithmetics (int8x3, the default, and
// fp32, both at fp32 rounding level; the opt-in int8): every path against x · dequantize()ᵀ
// computed in double, SIMD against the scalar reference bit for bit, and 1 vs 2 threads bit for
// bit; for integer zero points (GroupParams) and float offsets (OffsetParams: fractional zero
// points and the additive rule).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "formats/kernels/kernels.h"
#include "formats/kernels/packed_matmul.h"
#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq::kernels {
namespace {

// fp32 and int8x3 arithmetics: |y − x·Wᵀ| ≤ kFp32Tolerance · Σ|x·w|. Only fp32 rounding (and,
// for int8x3, a split of x exact to 2^−22 of its block max) separates the kernels from the
// double reference (measured ≤ 1.3e-7; K up to 11008 is tested).
constexpr double kFp32Tolerance = 1e-5;
// int8 arithmetic: |y − x̂·Wᵀ| ≤ kRoundingTolerance · Σ|x̂·w|: the kernels multiply exactly the int8-quantized
// activations x̂ = d·q (dequantize_activations), so only fp32 rounding separates them.
constexpr double kRoundingTolerance = 1e-5;
// |y − x·Wᵀ| ≤ kActivationTolerance · Σ|x·w| for Gaussian activations: the int8 block
// quantization of x (≤ max|x_b|/254 per element) dominates.
constexpr double kActivationTolerance = 1e-2;

// The statistics a grid holds: integer zero points (packed as GroupParams), or what the kernels
// carry as float offsets: fractional zero points (SpQR-like) and additive offsets (Q4_1/Q4_K-like).
enum class Zeros { integer, fractional, additive };
const char* zeros_name(Zeros z) {
  return z == Zeros::integer ? "integer zeros" : z == Zeros::fractional ? "fractional zeros" : "additive offsets";
}

struct Case {
  int rows, cols, bits, group_size;
  bool act_order;
  Zeros zeros = Zeros::integer;
  std::string name() const {
    return std::to_string(rows) + "x" + std::to_string(cols) + " b" + std::to_string(bits) + " g" +
           std::to_string(group_size) + (act_order ? " act-order" : "") + " " + zeros_name(zeros);
  }
};

// Random codes, scales and zeros of the case's kind; act-order assigns groups along a random
// column permutation as GPTQ does (each group group_size columns of the permuted order).
GridCodes random_weight(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GridCodes q;
  q.rows = c.rows;
  q.cols = c.cols;
  q.grid.bits = c.bits;
  q.grid.group_size = c.group_size;
  const int groups = q.grid.num_groups(c.cols);
  const int max_q = q.grid.max_q();
  q.q.resize(size_t(c.rows) * c.cols);
  for (auto& v : q.q) v = uint8_t(rng() % (max_q + 1));
  q.scales.resize(c.rows, groups);
  q.zeros.resize(c.rows, groups);
  for (int r = 0; r < c.rows; ++r)
    for (int g = 0; g < groups; ++g) {
      q.scales(r, g) = 0.01f * (0.5f + float(rng() % 1000) / 1000.0f);
      q.zeros(r, g) = float(rng() % (max_q + 1));
      if (c.zeros == Zeros::fractional) q.zeros(r, g) = float(rng() % (1000 * max_q + 1)) / 1000.0f;
      if (c.zeros == Zeros::additive) q.zeros(r, g) = -q.scales(r, g) * float(rng() % (1000 * max_q + 1)) / 1000.0f;
    }
  if (c.zeros == Zeros::additive) q.rule = OffsetRule::kAdditive;
  std::vector<int> order(c.cols);
  std::iota(order.begin(), order.end(), 0);
  if (c.act_order) std::shuffle(order.begin(), order.end(), rng);
  q.g_idx.resize(c.cols);
  for (int i = 0; i < c.cols; ++i) q.g_idx[order[i]] = c.group_size <= 0 ? 0 : i / c.group_size;
  return q;
}

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

struct Reference {
  std::vector<double> y, abs_sum;  // [tokens, rows]
};

Reference reference_product(const Mat& w, const std::vector<float>& x, int tokens) {
  Reference ref;
  ref.y.assign(size_t(tokens) * w.rows(), 0.0);
  ref.abs_sum.assign(size_t(tokens) * w.rows(), 0.0);
  for (int t = 0; t < tokens; ++t)
    for (int r = 0; r < w.rows(); ++r)
      for (int c = 0; c < w.cols(); ++c) {
        const double p = double(x[size_t(t) * w.cols() + c]) * double(w(r, c));
        ref.y[size_t(t) * w.rows() + r] += p;
        ref.abs_sum[size_t(t) * w.rows() + r] += std::fabs(p);
      }
  return ref;
}

std::vector<KernelPath> all_paths() { return {KernelPath::ref, KernelPath::avx2, KernelPath::avx512}; }

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (int bits : {2, 3, 4, 8})
    for (int gs : {32, 128, -1})
      for (int k : {172, 256})
        for (bool act : {false, true}) cases.push_back({40, k, bits, gs, act});
  // Float offsets: every bit width and group size, partial blocks, act-order.
  for (Zeros z : {Zeros::fractional, Zeros::additive})
    for (int bits : {2, 3, 4, 8})
      for (int gs : {32, 128, -1}) cases.push_back({40, 172, bits, gs, true, z});
  return cases;
}

void expect_within(const std::vector<float>& y, const Reference& ref, double tol, const std::string& what) {
  for (size_t i = 0; i < y.size(); ++i) {
    const double bound = tol * ref.abs_sum[i] + 1e-30;
    ASSERT_LE(std::fabs(double(y[i]) - ref.y[i]), bound) << what << " output " << i << ": " << y[i] << " vs " << ref.y[i];
  }
}

// Integer zeros keep the 80-byte GroupParams and their exact scale·(code − zero); additive
// offsets are scale·code + offset as GridCodes evaluates them; fractional zero points become
// offset = fp32(−scale·zero): fp32(scale·code) + offset against fp32(scale·(code − zero)), a few
// roundings of the terms apart.
TEST(Kernels, PackedDequantizeEqualsGridCodes) {
  for (const Case& c : all_cases()) {
    const GridCodes q = random_weight(c, 7);
    const PackedMatrix m = pack_matrix(q);
    ASSERT_EQ(m.float_offsets, c.zeros != Zeros::integer) << c.name();
    ASSERT_EQ(m.params.size() * sizeof(GroupParams) + m.offset_params.size() * sizeof(OffsetParams),
              size_t(m.tiles) * m.groups * (m.float_offsets ? 128 : 80)) << c.name();
    const Mat expected = q.dequantize();
    const Mat got = dequantize(m);
    if (c.zeros != Zeros::fractional) {
      ASSERT_TRUE(got == expected) << c.name();
      continue;
    }
    for (int r = 0; r < c.rows; ++r)
      for (int k = 0; k < c.cols; ++k) {
        const int g = q.g_idx[k];
        const double s = q.scales(r, g), code = q.q[size_t(r) * c.cols + k];
        const double bound = std::ldexp(std::fabs(s) * code + std::fabs(s * q.zeros(r, g)) + 2 * std::fabs(expected(r, k)), -23);
        ASSERT_LE(std::fabs(double(got(r, k)) - expected(r, k)), bound) << c.name() << " at " << r << ", " << k;
      }
  }
}

constexpr ActivationArithmetic kFp32 = ActivationArithmetic::fp32;
constexpr ActivationArithmetic kInt8x3 = ActivationArithmetic::int8x3;
constexpr ActivationArithmetic kInt8 = ActivationArithmetic::int8;
const std::vector<ActivationArithmetic> kExactArithmetics = {kInt8x3, kFp32};
const std::vector<int> kTokenCounts = {1, 2, 7, 8, 33, 64};

// int8x3 and fp32 arithmetics, every path, every shape and token count: against x·Wᵀ in double.
TEST(Kernels, Fp32LevelEveryPathMatchesDoubleReference) {
  for (ActivationArithmetic arithmetic : kExactArithmetics)
  for (KernelPath path : all_paths()) {
    if (!cpu_supports(path)) {
      std::cout << "[ SKIPPED  ] " << path_name(path) << ": this CPU lacks it\n";
      continue;
    }
    for (const Case& c : all_cases()) {
      const GridCodes q = random_weight(c, 11 + c.bits);
      const PackedMatrix m = pack_matrix(q);
      const Mat w = q.dequantize();
      for (int tokens : kTokenCounts) {
        const std::vector<float> x = gaussian(size_t(tokens) * c.cols, 100 + tokens);
        std::vector<float> y(size_t(tokens) * c.rows, -1.0f);
        packed_matmul(m, x.data(), tokens, y.data(), path, arithmetic);
        expect_within(y, reference_product(w, x, tokens), kFp32Tolerance,
                      arithmetic_name(arithmetic) + " " + path_name(path) + " " + c.name() + " tokens " +
                          std::to_string(tokens));
        if (HasFatalFailure()) return;
      }
    }
  }
}

// Long rows (K = 11008, the Llama-7B down projection): per-channel and g128, 8-bit codes (the
// largest products) and 4-bit, plus a 300σ outlier channel (fp32 multiplies it exactly; int8x3
// splits its block relative to it, 2^−22 of 300 per neighbour).
TEST(Kernels, Fp32LevelLongRowsAndOutlierWithinTolerance) {
  for (ActivationArithmetic arithmetic : kExactArithmetics)
  for (KernelPath path : all_paths()) {
    if (!cpu_supports(path)) continue;
    for (const Case& c : {Case{20, 11008, 8, -1, false}, Case{20, 11008, 4, 128, true}, Case{20, 11008, 3, -1, true},
                          Case{20, 11008, 4, 128, true, Zeros::additive}, Case{20, 11008, 8, -1, false, Zeros::fractional}}) {
      const GridCodes q = random_weight(c, 5);
      const PackedMatrix m = pack_matrix(q);
      std::vector<float> x = gaussian(size_t(2) * c.cols, 6);
      x[4321] = 300.0f;
      std::vector<float> y(size_t(2) * c.rows);
      packed_matmul(m, x.data(), 2, y.data(), path, arithmetic);
      expect_within(y, reference_product(q.dequantize(), x, 2), kFp32Tolerance,
                    arithmetic_name(arithmetic) + " " + path_name(path) + " " + c.name());
    }
  }
}

// The fp32 SIMD kernels run the reference's four FMA chains in the same order; the int8x3 ones
// its exact integer dots and the same fp32 combination.
TEST(Kernels, Fp32LevelSimdMatchesRefBitForBit) {
  for (ActivationArithmetic arithmetic : kExactArithmetics)
  for (KernelPath path : {KernelPath::avx2, KernelPath::avx512}) {
    if (!cpu_supports(path)) {
      std::cout << "[ SKIPPED  ] " << path_name(path) << ": this CPU lacks it\n";
      continue;
    }
    for (const Case& c : all_cases())
      for (int tokens : {1, 3, 4, 8, 33}) {
        const PackedMatrix m = pack_matrix(random_weight(c, 23));
        const std::vector<float> x = gaussian(size_t(tokens) * c.cols, 5);
        std::vector<float> y_ref(size_t(tokens) * c.rows), y_simd(y_ref.size());
        packed_matmul(m, x.data(), tokens, y_ref.data(), KernelPath::ref, arithmetic);
        packed_matmul(m, x.data(), tokens, y_simd.data(), path, arithmetic);
        ASSERT_EQ(0, std::memcmp(y_ref.data(), y_simd.data(), y_ref.size() * sizeof(float)))
            << arithmetic_name(arithmetic) << " " << path_name(path) << " " << c.name() << " tokens " << tokens;
      }
  }
}

// int8 arithmetic, every path, every shape: against x̂·Wᵀ (rounding only) and x·Wᵀ (activation
// quantization).
TEST(Kernels, Int8EveryPathMatchesDoubleReference) {
  for (KernelPath path : all_paths()) {
    if (!cpu_supports(path)) {
      std::cout << "[ SKIPPED  ] " << path_name(path) << ": this CPU lacks it\n";
      continue;
    }
    for (const Case& c : all_cases()) {
      const GridCodes q = random_weight(c, 11 + c.bits);
      const PackedMatrix m = pack_matrix(q);
      const Mat w = q.dequantize();
      for (int tokens : kTokenCounts) {
        const std::string what = "int8 " + path_name(path) + " " + c.name() + " tokens " + std::to_string(tokens);
        const std::vector<float> x = gaussian(size_t(tokens) * c.cols, 100 + tokens);
        std::vector<float> y(size_t(tokens) * c.rows, -1.0f);
        packed_matmul(m, x.data(), tokens, y.data(), path, kInt8);
        const std::vector<float> x_hat = dequantize_activations(m, quantize_activations(m, x.data(), tokens));
        expect_within(y, reference_product(w, x_hat, tokens), kRoundingTolerance, what + " vs x̂");
        expect_within(y, reference_product(w, x, tokens), kActivationTolerance, what + " vs x");
        if (HasFatalFailure()) return;
      }
    }
  }
}

// The int8 SIMD kernels perform the reference's integer sums and fp32 operations in the same order.
TEST(Kernels, Int8SimdMatchesRefBitForBit) {
  for (KernelPath path : {KernelPath::avx2, KernelPath::avx512}) {
    if (!cpu_supports(path)) {
      std::cout << "[ SKIPPED  ] " << path_name(path) << ": this CPU lacks it\n";
      continue;
    }
    for (const Case& c : all_cases())
      for (int tokens : {1, 3, 8, 33}) {
        const PackedMatrix m = pack_matrix(random_weight(c, 23));
        const std::vector<float> x = gaussian(size_t(tokens) * c.cols, 5);
        std::vector<float> y_ref(size_t(tokens) * c.rows), y_simd(y_ref.size());
        packed_matmul(m, x.data(), tokens, y_ref.data(), KernelPath::ref, kInt8);
        packed_matmul(m, x.data(), tokens, y_simd.data(), path, kInt8);
        ASSERT_EQ(0, std::memcmp(y_ref.data(), y_simd.data(), y_ref.size() * sizeof(float)))
            << path_name(path) << " " << c.name() << " tokens " << tokens;
      }
  }
}

// The int8 activation error obeys its worst-case bound Σ_k |w_k|·d_b/2 even when one channel is
// an outlier that coarsens its block's step d_b.
TEST(Kernels, Int8ActivationErrorWithinBoundWithOutlier) {
  const Case c{48, 256, 4, 128, true};
  const GridCodes q = random_weight(c, 3);
  const PackedMatrix m = pack_matrix(q);
  const Mat w = q.dequantize();
  std::vector<float> x = gaussian(c.cols, 9);
  x[17] = 300.0f;
  const ActivationBlocks a = quantize_activations(m, x.data(), 1);
  std::vector<double> half_step(c.cols, 0.0);  // d_b/2 of each original column
  for (int p = 0; p < m.blocks * kBlockCols; ++p)
    if (m.source_col[p] >= 0) half_step[m.source_col[p]] = 0.5 * a.token_scale(0)[p / kBlockCols];
  std::vector<float> y(c.rows);
  packed_matmul(m, x.data(), 1, y.data(), active_kernel_path(), kInt8);
  const Reference ref = reference_product(w, x, 1);
  for (int r = 0; r < c.rows; ++r) {
    double bound = 0;
    for (int k = 0; k < c.cols; ++k) bound += std::fabs(w(r, k)) * half_step[k];
    EXPECT_LE(std::fabs(y[r] - ref.y[r]), bound * 1.001 + kRoundingTolerance * ref.abs_sum[r]) << "row " << r;
  }
}

// A token holding an inf or NaN (a diverged model, a damaged checkpoint) gives non-finite
// outputs on every path and arithmetic, as x·Wᵀ would, without rounding a non-finite value to
// an integer (undefined behaviour the fuzzed packed_checkpoint forward found); the finite
// tokens beside it are untouched, bit for bit.
TEST(Kernels, NonFiniteActivationsGiveNonFiniteOutputs) {
  const Case c{40, 172, 4, 32, true, Zeros::additive};
  const PackedMatrix m = pack_matrix(random_weight(c, 5));
  const int tokens = 3;
  const std::vector<float> finite = gaussian(size_t(tokens) * c.cols, 21);
  std::vector<float> x = finite;
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[c.cols + 100] = std::numeric_limits<float>::infinity();
  for (ActivationArithmetic arithmetic : {kInt8x3, kFp32, kInt8})
    for (KernelPath path : all_paths()) {
      if (!cpu_supports(path)) continue;
      const std::string what = arithmetic_name(arithmetic) + " " + path_name(path);
      std::vector<float> y(size_t(tokens) * c.rows), y_finite(y.size());
      packed_matmul(m, x.data(), tokens, y.data(), path, arithmetic);
      packed_matmul(m, finite.data(), tokens, y_finite.data(), path, arithmetic);
      for (int r = 0; r < 2 * c.rows; ++r) EXPECT_FALSE(std::isfinite(y[r])) << what << " output " << r;
      EXPECT_EQ(0, std::memcmp(y.data() + 2 * c.rows, y_finite.data() + 2 * c.rows, c.rows * sizeof(float))) << what;
    }
}

TEST(Kernels, OneAndTwoThreadsBitIdentical) {
  for (Zeros zeros : {Zeros::integer, Zeros::additive}) {
    const Case c{520, 512, 4, 128, true, zeros};  // large enough to run in parallel; 520 = partial tile
    const PackedMatrix m = pack_matrix(random_weight(c, 31));
    for (ActivationArithmetic arithmetic : {kInt8x3, kFp32, kInt8})
      for (KernelPath path : all_paths()) {
        if (!cpu_supports(path)) continue;
        for (int tokens : {1, 8}) {
          const std::string what =
              arithmetic_name(arithmetic) + " " + path_name(path) + " " + c.name() + " tokens " + std::to_string(tokens);
          const std::vector<float> x = gaussian(size_t(tokens) * c.cols, 77);
          std::vector<float> y1(size_t(tokens) * c.rows), y2(y1.size());
          set_num_threads(1);
          packed_matmul(m, x.data(), tokens, y1.data(), path, arithmetic);
          set_num_threads(2);
          packed_matmul(m, x.data(), tokens, y2.data(), path, arithmetic);
          EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float))) << what;
          packed_matmul(m, x.data(), tokens, y1.data(), path, arithmetic);  // rerun
          EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float))) << what << " rerun";
        }
      }
  }
}

// PackedLinear through make_packed_linear, with more tokens than one GEMM call takes: int8x3 by
// default, fp32 or int8 when $PTQ_KERNEL_ACT asks for it when the linear is built. The
// environment is read once, at build time: changing it later changes nothing.
TEST(Kernels, PackedLinearMatchesDequantizedProduct) {
  const Case c{33, 172, 3, 32, true};
  const GridCodes q = random_weight(c, 41);
  ::unsetenv("PTQ_KERNEL_ACT");
  const auto linear = make_packed_linear(q);
  EXPECT_EQ(linear->rows(), 33);
  EXPECT_EQ(linear->cols(), 172);
  EXPECT_TRUE(linear->dequantize() == q.dequantize());
  const int tokens = kMaxGemmTokens + 6;
  const std::vector<float> x = gaussian(size_t(tokens) * c.cols, 8);
  std::vector<float> y(size_t(tokens) * c.rows);
  const Reference ref = reference_product(q.dequantize(), x, tokens);
  linear->matmul(x.data(), tokens, y.data());
  expect_within(y, ref, kFp32Tolerance, "PackedLinear default (int8x3)");
  ::setenv("PTQ_KERNEL_ACT", "fp32", 1);
  const auto linear32 = make_packed_linear(q);
  std::vector<float> y32(y.size());
  linear32->matmul(x.data(), tokens, y32.data());
  expect_within(y32, ref, kFp32Tolerance, "PackedLinear fp32");
  ::setenv("PTQ_KERNEL_ACT", "int8", 1);
  const auto linear8 = make_packed_linear(q);
  std::vector<float> y8(y.size()), y_again(y.size());
  linear8->matmul(x.data(), tokens, y8.data());
  linear->matmul(x.data(), tokens, y_again.data());  // built under the default: unaffected
  ::unsetenv("PTQ_KERNEL_ACT");
  expect_within(y8, ref, kActivationTolerance, "PackedLinear int8");
  EXPECT_NE(0, std::memcmp(y.data(), y8.data(), y.size() * sizeof(float))) << "PTQ_KERNEL_ACT=int8 had no effect";
  EXPECT_EQ(0, std::memcmp(y.data(), y_again.data(), y.size() * sizeof(float)))
      << "a linear built before PTQ_KERNEL_ACT changed followed it";
  ::setenv("PTQ_KERNEL", "sse9", 1);
  EXPECT_THROW(make_packed_linear(q), Error) << "an unknown PTQ_KERNEL must fail when the linear is built";
  linear->matmul(x.data(), tokens, y_again.data());  // matmul does not read the environment
  ::unsetenv("PTQ_KERNEL");
  EXPECT_EQ(0, std::memcmp(y.data(), y_again.data(), y.size() * sizeof(float)));
}

TEST(Kernels, BadWeightsThrowNamedErrors) {
  const Case c{16, 64, 4, 32, false};
  auto expect_error = [](const GridCodes& q, const std::string& fragment) {
    try {
      pack_matrix(q);
      ADD_FAILURE() << "expected an error mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  GridCodes q = random_weight(c, 1);
  q.grid.bits = 5;
  expect_error(q, "expected 2, 3, 4 or 8 bits");
  q = random_weight(c, 1);
  q.q[70] = 16;
  expect_error(q, "exceeds 15");
  q = random_weight(c, 1);
  q.zeros(3, 1) = std::nanf("");
  expect_error(q, "not finite");
  q = random_weight(c, 1);
  q.scales(2, 0) = INFINITY;
  expect_error(q, "not finite");
  q = random_weight(c, 1);
  q.g_idx[5] = 2;
  expect_error(q, "g_idx[5]");
  q = random_weight(c, 1);
  q.q.pop_back();
  expect_error(q, "codes");
}

TEST(Kernels, KernelPathFromEnvironment) {
  ::setenv("PTQ_KERNEL", "ref", 1);
  EXPECT_EQ(active_kernel_path(), KernelPath::ref);
  ::setenv("PTQ_KERNEL", "sse9", 1);
  EXPECT_THROW(active_kernel_path(), Error);
  force_kernel_path(KernelPath::ref);  // the function override wins over the environment
  EXPECT_EQ(active_kernel_path(), KernelPath::ref);
  force_kernel_path(std::nullopt);
  ::unsetenv("PTQ_KERNEL");
  EXPECT_TRUE(cpu_supports(active_kernel_path()));
}

TEST(Kernels, ActivationArithmeticFromEnvironment) {
  ::unsetenv("PTQ_KERNEL_ACT");
  EXPECT_EQ(active_activation_arithmetic(), ActivationArithmetic::int8x3);  // the default
  ::setenv("PTQ_KERNEL_ACT", "fp32", 1);
  EXPECT_EQ(active_activation_arithmetic(), ActivationArithmetic::fp32);
  ::setenv("PTQ_KERNEL_ACT", "int8", 1);
  EXPECT_EQ(active_activation_arithmetic(), ActivationArithmetic::int8);
  ::setenv("PTQ_KERNEL_ACT", "fp16", 1);
  EXPECT_THROW(active_activation_arithmetic(), Error);
  force_activation_arithmetic(ActivationArithmetic::fp32);  // the function override wins
  EXPECT_EQ(active_activation_arithmetic(), ActivationArithmetic::fp32);
  force_activation_arithmetic(std::nullopt);
  ::unsetenv("PTQ_KERNEL_ACT");
}

}  // namespace
}  // namespace ptq::kernels
