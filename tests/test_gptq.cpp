// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <cmath>
#include <numeric>
#include <utility>

#include "algorithms/gptq.h"
#include "algorithms/grid.h"
#include "algorithms/synthetic_layer.h"
#include "ptq/error.h"

namespace ptq {
namespace {

using synthetic_layer::Activations;

struct Layer {
  Mat w;
  InputStats calib{1}, held_out{1};
};

Layer make_layer(int n, int k, int outliers, uint64_t seed, int calib_tokens = 2048) {
  Activations act(k, /*rank=*/k / 8, /*noise=*/0.1f, outliers, /*outlier_scale=*/25.0f, seed);
  Layer l{synthetic_layer::weights(n, k, seed + 1), InputStats(k), InputStats(k)};
  l.calib.add_batch(act.sample(calib_tokens, seed + 2));
  l.held_out.add_batch(act.sample(1024, seed + 3));
  return l;
}

GridCodes run(const std::string& spec, const Mat& w, const InputStats& s, QuantLog* log = nullptr) {
  return make_quantizer(parse_spec(spec))->quantize(w, &s, log).grid;
}

double held_out_error(const Layer& l, const GridCodes& q) {
  return relative_output_error(l.w, q.dequantize(), l.held_out.hessian());
}

// ---- GPTQ beats RTN on held-out tokens ------------------------------------------------------
class GptqVsRtn : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(GptqVsRtn, LowerHeldOutError) {
  const auto [bits, group] = GetParam();
  Layer l = make_layer(128, 512, 4, 11);
  const std::string args = "(w" + std::to_string(bits) + ",g" + std::to_string(group) + ")";
  const double rtn = held_out_error(l, run("rtn" + args, l.w, l.calib));
  const double gptq = held_out_error(l, run("gptq" + args, l.w, l.calib));
  RecordProperty("rtn", std::to_string(rtn));
  RecordProperty("gptq", std::to_string(gptq));
  EXPECT_LT(gptq, rtn) << "w" << bits << " g" << group;
  EXPECT_LT(gptq, 0.8 * rtn) << "GPTQ should win clearly on correlated inputs";
}

INSTANTIATE_TEST_SUITE_P(BitsGroups, GptqVsRtn,
                         ::testing::Combine(::testing::Values(4, 3), ::testing::Values(32, 128, 0)));

// Both orders by diag H beat the original order on inputs with outlier channels.
TEST(Gptq, OrdersByImportanceHelpWithOutlierChannels) {
  Layer l = make_layer(128, 512, 8, 21);
  struct Case { const char* groups; const char* order; };
  for (Case c : {Case{"g0", "act_order"}, Case{"g128", "act_order"}, Case{"g32", "group_aware"},
                 Case{"g128", "group_aware"}}) {
    const std::string base = std::string("gptq(w3,") + c.groups;
    const double plain = held_out_error(l, run(base + ")", l.w, l.calib));
    const double ordered = held_out_error(l, run(base + "," + c.order + ")", l.w, l.calib));
    RecordProperty(std::string(c.order) + "_" + c.groups, std::to_string(ordered / plain));
    EXPECT_LT(ordered, plain) << c.groups << " " << c.order;
  }
}

TEST(Gptq, ActOrderGroupIndices) {
  Layer l = make_layer(16, 96, 4, 5);
  GridCodes dyn = run("gptq(w4,g32,act_order)", l.w, l.calib);
  GridCodes stat = run("gptq(w4,g32,act_order,static_groups)", l.w, l.calib);
  std::vector<int> count(3, 0);
  for (int c = 0; c < 96; ++c) {
    EXPECT_EQ(stat.g_idx[c], c / 32);
    ++count[dyn.g_idx[c]];
  }
  for (int n : count) EXPECT_EQ(n, 32);  // dynamic groups: 32 permuted columns each
  // Dequantizing through g_idx must reproduce what the algorithm computed; spot-check ranges.
  EXPECT_TRUE(dyn.dequantize().allFinite());
}

// ---- Determinism ----------------------------------------------------------------------------
TEST(Gptq, BitIdenticalAcrossThreadCounts) {
  Layer l = make_layer(300, 384, 4, 31);  // 300 rows: several chunks and a ragged last one
  const int saved = omp_get_max_threads();
  for (const char* spec : {"gptq(w4,g32,act_order)", "gptq(w3,g0,mse)", "gptq(w4,g128,sym,act_order,static_groups)",
                           "gptq(w4,g64,group_aware)"}) {
    omp_set_num_threads(1);
    GridCodes a = run(spec, l.w, l.calib);
    omp_set_num_threads(2);
    GridCodes b = run(spec, l.w, l.calib);
    EXPECT_EQ(a.q, b.q) << spec;
    EXPECT_EQ(a.g_idx, b.g_idx) << spec;
    EXPECT_EQ(0, std::memcmp(a.scales.data(), b.scales.data(), a.scales.size() * sizeof(float))) << spec;
    EXPECT_EQ(0, std::memcmp(a.zeros.data(), b.zeros.data(), a.zeros.size() * sizeof(float))) << spec;
  }
  omp_set_num_threads(saved);
}

// ---- Independent textbook GPTQ --------------------------------------------------------------
// The reference's arithmetic, column by column over the whole remaining row (no lazy batches):
// U from Eigen's LLT → inverse → LLT in double, err = (w − q)/U_jj, w[t] −= err·U_jt in fp32.
// The implementation uses another factor and update form (R̂, docs/algorithms.md), so agreement
// here checks the derivation as well as the code. Dynamic groups are fitted where the
// reference fits them: at column j % g == 0, on the weights as they were when j's lazy block
// (of `block` columns) started — a snapshot of the row taken at every block start.
// GPTQModel's group-aware order (gar.py, written again from the paper's description): group
// metric max diag H, groups descending, then each group's columns descending; a partial last
// group stays last.
std::vector<int> textbook_group_aware_order(const MatD& h, int g) {
  const int k = static_cast<int>(h.rows()), full = k / g;
  std::vector<std::pair<double, int>> groups;
  for (int gi = 0; gi < full; ++gi) groups.push_back({h.diagonal().segment(gi * g, g).maxCoeff(), gi});
  std::stable_sort(groups.begin(), groups.end(), [](auto a, auto b) { return a.first > b.first; });
  if (full * g < k) groups.push_back({0.0, full});
  std::vector<int> perm;
  for (auto [metric, gi] : groups) {
    std::vector<int> cols;
    for (int c = gi * g; c < std::min(k, gi * g + g); ++c) cols.push_back(c);
    std::stable_sort(cols.begin(), cols.end(), [&](int a, int b) { return h(a, a) > h(b, b); });
    perm.insert(perm.end(), cols.begin(), cols.end());
  }
  return perm;
}

enum class Order { natural, act_order, group_aware };

std::vector<uint8_t> textbook_gptq(const Mat& w_in, MatD h, const QuantGrid& g, Order order, double damp,
                                   int block = 128, Mat* dequantized = nullptr) {
  const int n = static_cast<int>(w_in.rows()), k = static_cast<int>(w_in.cols());
  Mat w = w_in;
  std::vector<grid::Params> channel(n);
  if (g.group_size <= 0)
    for (int r = 0; r < n; ++r) channel[r] = grid::find_params(&w(r, 0), k, g);
  for (int i = 0; i < k; ++i)
    if (h(i, i) == 0) { h(i, i) = 1; w.col(i).setZero(); }
  std::vector<int> perm(k);
  std::iota(perm.begin(), perm.end(), 0);
  if (order == Order::act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return h(a, a) > h(b, b); });
  if (order == Order::group_aware) perm = textbook_group_aware_order(h, g.super_width());
  if (dequantized) dequantized->resize(n, k);
  Mat wp(n, k);
  MatD hp(k, k);
  for (int j = 0; j < k; ++j) {
    wp.col(j) = w.col(perm[j]);
    for (int i = 0; i < k; ++i) hp(i, j) = h(perm[i], perm[j]);
  }
  hp.diagonal().array() += damp * hp.diagonal().mean();
  MatD hinv_full = hp.llt().solve(MatD::Identity(k, k));
  MatD u = hinv_full.llt().matrixU();
  Mat hinv = u.cast<float>();
  std::vector<uint8_t> codes(size_t(n) * k);
  std::vector<float> block_start(k);
  const int super = g.super_width();
  for (int r = 0; r < n; ++r) {
    grid::Params p = channel[r];
    grid::SuperBlockParams sb;
    for (int j = 0; j < k; ++j) {
      if (j % block == 0) std::copy_n(&wp(r, 0), k, block_start.data());
      // A K-quant super-block is fitted whole when its first column is reached (its start is a
      // multiple of `block`, so block_start holds its updated weights).
      // Under group_aware its columns come permuted inside it: fitted in their original places.
      if (g.super_groups > 0 && j % super == 0) {
        const int width = std::min(super, k - j), first = perm[j] / super * super;
        std::vector<float> original(width);
        for (int i = 0; i < width; ++i) original[perm[j + i] - first] = block_start[j + i];
        sb = grid::fit_super_block(original.data(), width, g);
      }
      if (g.super_groups > 0) p = sb.group[(perm[j] % super) / g.group_size];
      else if (g.group_size > 0 && j % g.group_size == 0)
        p = grid::find_params(&block_start[j], std::min(g.group_size, k - j), g);
      const float code = grid::quantize_code(wp(r, j), p, g.max_q());
      codes[size_t(r) * k + perm[j]] = static_cast<uint8_t>(code);
      if (dequantized) (*dequantized)(r, perm[j]) = grid::dequantize_code(code, p);
      const float e = (wp(r, j) - grid::dequantize_code(code, p)) / hinv(j, j);
      for (int t = j + 1; t < k; ++t) wp(r, t) -= e * hinv(j, t);
    }
  }
  return codes;
}

struct CodeAgreement {
  size_t same = 0, total = 0;
  int rows_differing = 0;
};

CodeAgreement compare_codes(const std::vector<uint8_t>& ref, const GridCodes& q) {
  CodeAgreement a;
  a.total = ref.size();
  for (int r = 0; r < q.rows; ++r) {
    bool differs = false;
    for (int c = 0; c < q.cols; ++c) {
      const size_t i = static_cast<size_t>(r) * q.cols + c;
      a.same += ref[i] == q.q[i];
      differs |= ref[i] != q.q[i];
    }
    a.rows_differing += differs;
  }
  return a;
}

// The check: a 64×256 layer, the same integers.
TEST(Gptq, MatchesTextbookImplementation) {
  Layer l = make_layer(64, 256, 4, 41);
  struct Case { const char* spec; Order order; int block; };
  for (Case c : {Case{"gptq(w4,g128)", Order::natural, 128}, Case{"gptq(w4,g0)", Order::natural, 128},
                 Case{"gptq(w3,g0,act_order)", Order::act_order, 128}, Case{"gptq(w4,g128,sym)", Order::natural, 128},
                 Case{"gptq(w4,g32)", Order::natural, 128},
                 Case{"gptq(w4,g64,act_order,block=32)", Order::act_order, 32},
                 Case{"gptq(w4,g32,group_aware)", Order::group_aware, 128},
                 Case{"gptq(w3,g64,group_aware,block=32)", Order::group_aware, 32}}) {
    GridCodes q = run(c.spec, l.w, l.calib);
    std::vector<uint8_t> ref = textbook_gptq(l.w, l.calib.hessian(), q.grid, c.order, 0.01, c.block);
    const CodeAgreement a = compare_codes(ref, q);
    EXPECT_EQ(a.same, a.total) << c.spec << ": " << a.total - a.same << " codes differ";
  }
}

// Several lazy batches, ragged last blocks and row chunks (the trailing GEMM runs many times
// per chunk), groups starting mid-block (g32) and spanning blocks (g256 over block 128, with a
// partial last group). The factor is fp32 (as the reference's) against the textbook's fp64:
// a code can flip where a value sits within ~1e-5 of a rounding boundary, and a flip changes
// the rest of its row's error propagation. Hence: nearly all codes equal, in nearly all rows.
TEST(Gptq, MatchesTextbookImplementationOverManyBlocks) {
  Layer l = make_layer(200, 600, 6, 43, 4096);
  struct Case { const char* spec; Order order; int block; };
  for (Case c : {Case{"gptq(w4,g0,block=64)", Order::natural, 64},
                 Case{"gptq(w3,g128,block=64,act_order)", Order::act_order, 64},
                 Case{"gptq(w4,g0,act_order)", Order::act_order, 128}, Case{"gptq(w4,g32)", Order::natural, 128},
                 Case{"gptq(w3,g256,act_order)", Order::act_order, 128},
                 Case{"gptq(w3,g128,group_aware)", Order::group_aware, 128},  // 600 = 4·128 + 88
                 Case{"gptq(w4,g256,group_aware,block=64)", Order::group_aware, 64}}) {
    GridCodes q = run(c.spec, l.w, l.calib);
    std::vector<uint8_t> ref = textbook_gptq(l.w, l.calib.hessian(), q.grid, c.order, 0.01, c.block);
    const CodeAgreement a = compare_codes(ref, q);
    RecordProperty(std::string(c.spec) + "_codes_differing", std::to_string(a.total - a.same));
    EXPECT_GE(static_cast<double>(a.same) / a.total, 0.999) << c.spec;
    EXPECT_LE(a.rows_differing, 2) << c.spec << ": " << a.total - a.same << " codes differ";
    std::printf("%s: %zu of %zu codes differ, in %d rows\n", c.spec, a.total - a.same, a.total, a.rows_differing);
  }
}

// GAR keeps the natural groups (so formats without g_idx take it), and the scales it stores are
// the ones each group was fitted with: dequantizing reproduces the textbook's values.
TEST(Gptq, GroupAwareOrderKeepsNaturalGroupsAndTheirScales) {
  Layer l = make_layer(48, 200, 4, 7);  // 200 = 3·64 + 8: a partial last group
  GridCodes q = run("gptq(w4,g64,group_aware)", l.w, l.calib);
  for (int c = 0; c < 200; ++c) EXPECT_EQ(q.g_idx[c], c / 64);
  EXPECT_TRUE(q.natural_order());
  Mat want;
  const std::vector<uint8_t> codes = textbook_gptq(l.w, l.calib.hessian(), q.grid, Order::group_aware, 0.01, 128, &want);
  EXPECT_EQ(compare_codes(codes, q).same, codes.size());
  EXPECT_LE((q.dequantize() - want).cwiseAbs().maxCoeff(), 1e-5f * want.cwiseAbs().maxCoeff());
  // The order is not the identity on this layer, or the test would check nothing.
  const std::vector<int> perm = textbook_group_aware_order(l.calib.hessian(), 64);
  EXPECT_FALSE(std::is_sorted(perm.begin(), perm.end()));
}


// On the additive grid a GGUF Q4_1/Q5_1 format asks for (scale·code + offset, fp16 statistics),
// the loop's codes are the textbook's, and every value is exactly d·q + m as llama.cpp decodes it.
TEST(Gptq, AdditiveGridMatchesTextbookAndDecodesAsWritten) {
  Layer l = make_layer(64, 256, 4, 47);
  GridConstraints additive;
  additive.fp16_statistics = true;
  additive.additive_offsets = true;
  struct Case { const char* spec; Order order; };
  for (Case c : {Case{"gptq(w4,g32)", Order::natural}, Case{"gptq(w4,g64,group_aware)", Order::group_aware},
                 Case{"gptq(w4,g0)", Order::natural}}) {
    const GridCodes q = make_quantizer(parse_spec(c.spec), additive)->quantize(l.w, &l.calib, nullptr).grid;
    EXPECT_EQ(q.rule, OffsetRule::kAdditive) << c.spec;
    EXPECT_TRUE(q.grid.additive);
    Mat want;
    const std::vector<uint8_t> ref = textbook_gptq(l.w, l.calib.hessian(), q.grid, c.order, 0.01, 128, &want);
    // As in MatchesTextbookImplementationOverManyBlocks: the fp32 factor against the textbook's
    // fp64 can flip a code sitting within ~1e-5 of a rounding boundary, and the flip changes the
    // rest of its row (on an AVX-512 Xeon without AMX: 21 codes, all in one row). Rows whose codes
    // agree must decode to the textbook's values exactly.
    const CodeAgreement a = compare_codes(ref, q);
    EXPECT_LE(a.rows_differing, 1) << c.spec << ": " << a.total - a.same << " codes differ";
    EXPECT_GE(static_cast<double>(a.same) / a.total, 0.995) << c.spec;
    const Mat got = q.dequantize();
    for (int r = 0; r < q.rows; ++r) {
      bool row_agrees = true;
      for (int col = 0; col < q.cols; ++col) row_agrees &= ref[size_t(r) * q.cols + col] == q.q[size_t(r) * q.cols + col];
      for (int col = 0; col < q.cols; ++col) {
        const float d = q.scales(r, q.g_idx[col]), m = q.zeros(r, q.g_idx[col]);
        ASSERT_EQ(f16_to_f32(f32_to_f16(d)), d);
        ASSERT_EQ(f16_to_f32(f32_to_f16(m)), m);
        const float ggml = float(q.q[size_t(r) * q.cols + col]) * d + m;
        ASSERT_EQ(got(r, col), ggml) << c.spec;
        if (row_agrees) {
          ASSERT_EQ(got(r, col), want(r, col)) << c.spec << " row " << r;
        }
      }
    }
    // The offset is the group's minimum in fp16, the range not widened to include zero: the
    // first group of a row is fitted before any update reaches it.
    if (c.order == Order::natural) {
      const float w_min = l.w.row(0).segment(0, q.grid.group_size > 0 ? q.grid.group_size : q.cols).minCoeff();
      EXPECT_EQ(q.zeros(0, 0), f16_to_f32(f32_to_f16(w_min))) << c.spec;
    }
  }
  // The signed-extreme symmetric grid of the GGUF Q4_0/Q5_0 formats: the textbook's codes too.
  GridConstraints signed_extreme;
  signed_extreme.fp16_statistics = true;
  signed_extreme.signed_extreme = true;
  for (const char* spec : {"gptq(w4,g32,sym)", "gptq(w5,g128,sym)"}) {
    const GridCodes q = make_quantizer(parse_spec(spec), signed_extreme)->quantize(l.w, &l.calib, nullptr).grid;
    EXPECT_TRUE(q.grid.signed_extreme);
    EXPECT_LT(q.scales.minCoeff(), 0.0f) << spec;
    const std::vector<uint8_t> ref = textbook_gptq(l.w, l.calib.hessian(), q.grid, Order::natural, 0.01);
    EXPECT_EQ(compare_codes(ref, q).same, ref.size()) << spec;
  }
  // An additive grid beats the zero-point one on the layer objective here (zero need not be a level).
  const GridCodes zp = run("gptq(w4,g32)", l.w, l.calib);
  const GridCodes ad = make_quantizer(parse_spec("gptq(w4,g32)"), additive)->quantize(l.w, &l.calib, nullptr).grid;
  EXPECT_LT(held_out_error(l, ad), 1.05 * held_out_error(l, zp));
}

// On ggml's K-quant super-block grids (GGUF Q2_K..Q6_K: 256 columns per super-block, sub-block
// scales and minimums coded on fp16 second levels), the loop's codes are the textbook's with the
// super-block fitted when reached (to the float-order flips the many-blocks test allows), every statistic is the decoded value of its code, and GPTQ
// beats RTN on held-out inputs. With group_aware, whole super-blocks are ordered (the textbook's
// order with 256-column units) and each is still fitted whole, in its original column places.
TEST(Gptq, SuperBlockGridsMatchTextbookAndDecodeAsCoded) {
  Layer l = make_layer(48, 512, 4, 53);
  GridConstraints k_quant;
  k_quant.fp16_statistics = true;
  k_quant.signed_extreme = true;
  k_quant.k_quant_super_blocks = true;
  for (const char* order : {"", ",group_aware"})
  for (const char* spec : {"w2,g16", "w3,g16,sym", "w4,g32", "w5,g32", "w6,g16,sym"}) {
    SCOPED_TRACE(std::string(spec) + order);
    const std::string gptq = std::string("gptq(") + spec + order + ")", rtn = std::string("rtn(") + spec + ")";
    const GridCodes q = make_quantizer(parse_spec(gptq), k_quant)->quantize(l.w, &l.calib, nullptr).grid;
    ASSERT_GT(q.grid.super_groups, 0) << spec;
    EXPECT_EQ(q.grid.super_width(), 256);
    EXPECT_EQ(q.rule, q.grid.sym ? OffsetRule::kZeroPoint : OffsetRule::kAdditive) << spec;
    ASSERT_TRUE(q.coded_scales.has_value());
    EXPECT_EQ(q.coded_zeros.has_value(), !q.grid.sym);
    const std::vector<uint8_t> ref =
        textbook_gptq(l.w, l.calib.hessian(), q.grid, *order ? Order::group_aware : Order::natural, 0.01);
    for (int c = 0; c < q.cols; ++c) ASSERT_EQ(q.g_idx[c], c / q.grid.group_size);
    // As in MatchesTextbookImplementationOverManyBlocks: a value within ~1e-5 of a rounding
    // boundary may flip (fp32 factor against fp64), and the rest of its row follows: every code
    // equal in all rows but at most one (of 48).
    const CodeAgreement a = compare_codes(ref, q);
    EXPECT_LE(a.rows_differing, 1) << spec << ": " << a.total - a.same << " codes differ";
    const int groups = int(q.scales.cols());
    for (int r = 0; r < q.rows; ++r)
      for (int gi = 0; gi < groups; ++gi) {
        ASSERT_EQ(q.scales(r, gi), q.coded_scales->decode(r, gi, groups)) << spec;
        ASSERT_NE(q.scales(r, gi), 0.0f) << spec;
        if (q.coded_zeros) ASSERT_EQ(q.zeros(r, gi), q.coded_zeros->decode(r, gi, groups)) << spec;
        else ASSERT_EQ(q.zeros(r, gi), float((q.grid.max_q() + 1) / 2)) << spec;
      }
    for (Eigen::Index i = 0; i < q.coded_scales->scale2.size(); ++i) {
      const float d = q.coded_scales->scale2.data()[i];
      ASSERT_EQ(f16_to_f32(f32_to_f16(d)), d) << spec;
    }
    const GridCodes r = make_quantizer(parse_spec(rtn), k_quant)->quantize(l.w, nullptr, nullptr).grid;
    EXPECT_LT(held_out_error(l, q), held_out_error(l, r)) << spec;
  }
  // act_order's permuted groups cannot form super-blocks: refused when the quantizer is made.
  EXPECT_THROW(make_quantizer(parse_spec("gptq(w4,g32,act_order)"), k_quant), Error);
}

// The update factor R̂ (one fp32 Cholesky of the reversed H) against fp64 computations:
//  - R from Eigen's LLT of the reversed matrix, R = J·L·J, R̂ = R·diag(R)⁻¹;
//  - the reference's route: U = upper Cholesky factor of H⁻¹ (LLT → inverse → LLT), and
//    R̂ = (diag(U)⁻¹·U)⁻¹, the identity that makes the R̂ update equal GPTQ's.
// fp32 factor against fp64: agreement to fp32 precision times the (moderate) condition number.
TEST(Gptq, UpdateFactorMatchesFp64AndTheReferenceFactor) {
  for (int outliers : {0, 4}) {
    Layer l = make_layer(1, 200, outliers, 45 + outliers);
    MatD h = l.calib.hessian();
    h.diagonal().array() += 0.01 * h.diagonal().mean();
    Mat rhat;
    ASSERT_TRUE(gptq_update_factor(h, &rhat));
    const int k = static_cast<int>(h.rows());
    EXPECT_EQ(rhat.triangularView<Eigen::StrictlyLower>().toDenseMatrix().cwiseAbs().maxCoeff(), 0.0f);
    EXPECT_EQ(rhat.diagonal().minCoeff(), 1.0f);
    EXPECT_EQ(rhat.diagonal().maxCoeff(), 1.0f);
    const MatD reversed = h.reverse();  // J·H·J
    const MatD l_fac = reversed.llt().matrixL();
    const MatD r = l_fac.reverse();  // J·L·J, upper
    EXPECT_LT((r * r.transpose() - h).norm() / h.norm(), 1e-12);
    const MatD expected = r * r.diagonal().cwiseInverse().asDiagonal();
    EXPECT_LT((rhat.cast<double>() - expected).norm() / expected.norm(), 1e-5) << outliers;
    const MatD u = h.llt().solve(MatD::Identity(k, k)).llt().matrixU();
    const MatD u_unit = u.diagonal().cwiseInverse().asDiagonal() * u;
    EXPECT_LT((rhat.cast<double>() * u_unit - MatD::Identity(k, k)).norm() / std::sqrt(k), 1e-4) << outliers;
  }
  Mat rhat;
  EXPECT_FALSE(gptq_update_factor(-MatD::Identity(8, 8), &rhat));
}

// ---- Robustness -----------------------------------------------------------------------------
TEST(Gptq, RankDeficientHessianRetriesWithMoreDamping) {
  Activations act(64, 8, 0.1f, 0, 1.0f, 51);
  InputStats few(64);
  few.add_batch(act.sample(12, 52));  // 12 tokens: H has rank 12 < 64
  Mat w = synthetic_layer::weights(32, 64, 53);
  QuantLog log;
  GridCodes q = run("gptq(w4,g32,damp=0)", w, few, &log);
  ASSERT_FALSE(log.messages.empty());
  EXPECT_NE(log.messages[0].find("Cholesky failed"), std::string::npos) << log.messages[0];
  EXPECT_NE(log.messages[0].find("[32 x 64]"), std::string::npos) << log.messages[0];
  EXPECT_TRUE(q.dequantize().allFinite());
}

// A workspace carried from layer to layer (growing, then serving a smaller K, with a damping
// retry in between) changes nothing: every layer gets the codes of a call with its own.
TEST(Gptq, ReusedWorkspaceGivesTheSameResult) {
  const Layer small = make_layer(40, 96, 2, 121), large = make_layer(24, 200, 2, 131);
  InputStats few(64);  // rank deficient: the first Cholesky fails, damping is raised
  few.add_batch(Activations(64, 8, 0.1f, 0, 1.0f, 141).sample(8, 1));
  const Mat w_few = synthetic_layer::weights(16, 64, 142);
  GptqOptions o;
  o.damp = 0.0;
  o.act_order = true;
  GptqWorkspace workspace;
  for (int round = 0; round < 2; ++round) {
    for (const auto& [w, h] : {std::pair{&small.w, small.calib.hessian()}, std::pair{&large.w, large.calib.hessian()},
                               std::pair{&w_few, few.hessian()}}) {
      const GridCodes fresh = gptq_quantize(*w, h, o, nullptr);
      const GridCodes reused = gptq_quantize(*w, h, o, nullptr, &workspace);
      EXPECT_EQ(fresh.q, reused.q) << "round " << round << ", K " << w->cols();
      EXPECT_EQ(fresh.scales, reused.scales) << "round " << round << ", K " << w->cols();
    }
  }
}

TEST(Gptq, HopelessHessianGivesUpWithAnError) {
  Mat w = synthetic_layer::weights(8, 16, 61);
  MatD h = -MatD::Identity(16, 16);  // negative definite: no damping multiple of mean(diag) helps
  GptqOptions o;
  o.grid.group_size = -1;
  QuantLog log;
  try {
    gptq_quantize(w, h, o, &log);
    FAIL() << "expected ptq::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[8 x 16]"), std::string::npos) << e.what();
  }
  EXPECT_EQ(log.messages.size(), 5u);
}

// Non-finite inputs are the user's (an Error naming the layer), wherever they sit: in W, on
// H's diagonal, or off it on either side of the diagonal, in plain and act order.
TEST(Gptq, NonFiniteInputsAreErrors) {
  const Mat w = synthetic_layer::weights(8, 40, 62);
  const MatD h = MatD::Identity(40, 40) + MatD::Constant(40, 40, 0.01);
  auto expect_error = [](const Mat& wi, const MatD& hi, bool act_order, const char* what) {
    GptqOptions o;
    o.act_order = act_order;
    try {
      gptq_quantize(wi, hi, o, nullptr);
      ADD_FAILURE() << what << ": expected ptq::Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("[8 x 40]"), std::string::npos) << what << ": " << e.what();
    }
  };
  for (bool act_order : {false, true}) {
    Mat bad_w = w;
    bad_w(3, 7) = std::nanf("");
    expect_error(bad_w, h, act_order, "NaN weight");
    for (auto [r, c] : {std::pair{5, 5}, std::pair{2, 31}, std::pair{31, 2}}) {
      MatD bad_h = h;
      bad_h(r, c) = std::numeric_limits<double>::infinity();
      if (r != c) bad_h(c, r) = bad_h(r, c);  // symmetric, as InputStats makes it
      expect_error(w, bad_h, act_order, r == c ? "inf on diag H" : "inf off diag H");
    }
  }
}

TEST(Gptq, IndefiniteHessianIsRepairedByDamping) {
  const int k = 32;
  std::mt19937_64 rng(71);
  Mat a = synthetic_layer::gaussian(k, 8, 1.0f, rng);
  MatD h = (a * a.transpose()).cast<double>();
  h.diagonal().array() -= 1e-3 * h.diagonal().mean();  // slightly indefinite
  GptqOptions o;
  o.damp = 0;
  QuantLog log;
  GridCodes q = gptq_quantize(synthetic_layer::weights(4, k, 72), h, o, &log);
  EXPECT_EQ(log.messages.size(), 1u);
  EXPECT_TRUE(q.dequantize().allFinite());
}

TEST(Gptq, DeadColumnsQuantizeToZero) {
  Activations act(96, 12, 0.1f, 2, 10.0f, 81);
  Mat x = act.sample(512, 82);
  const std::vector<int> dead = {0, 7, 50, 95};
  for (int c : dead) x.col(c).setZero();
  InputStats s(96);
  s.add_batch(x);
  Mat w = synthetic_layer::weights(24, 96, 83);
  for (const char* spec : {"gptq(w4,g32)", "gptq(w4,g32,act_order)", "gptq(w3,g0,sym)"}) {
    Mat wq = run(spec, w, s).dequantize();
    ASSERT_TRUE(wq.allFinite()) << spec;
    for (int c : dead) EXPECT_EQ(wq.col(c).cwiseAbs().maxCoeff(), 0.0f) << spec << " column " << c;
  }
}

TEST(Gptq, RejectsMissingOrMismatchedStats) {
  auto q = make_quantizer(parse_spec("gptq"));
  Mat w = Mat::Zero(4, 8);
  EXPECT_THROW(q->quantize(w, nullptr, nullptr), Error);
  InputStats s(6);
  s.add_batch(Mat::Ones(3, 6));
  EXPECT_THROW(q->quantize(w, &s, nullptr), Error);
}

// ---- Specs and registry ---------------------------------------------------------------------
TEST(Gptq, CanonicalSpec) {
  EXPECT_EQ(make_quantizer(parse_spec("gptq"))->spec(), "gptq(w4,g128)");
  EXPECT_EQ(make_quantizer(parse_spec("gptq(act_order, g-1, w3, damp=0.1)"))->spec(),
            "gptq(w3,g0,act_order,damp=0.1)");
  for (const char* s : {"gptq(w2,g32,sym,mse,act_order,static_groups,damp=0.05,block=64)",
                        "gptq(w8,g0)", "gptq(w3,g64,sym,group_aware,block=32)"}) {
    std::string canon = make_quantizer(parse_spec(s))->spec();
    EXPECT_EQ(canon, s);
    EXPECT_EQ(make_quantizer(parse_spec(canon))->spec(), canon);
  }
  EXPECT_FALSE(make_quantizer(parse_spec("rtn"))->needs_stats());
  EXPECT_TRUE(make_quantizer(parse_spec("gptq"))->needs_stats());
}

TEST(Gptq, BadSpecsAreErrors) {
  EXPECT_THROW(make_quantizer(parse_spec("gptq(w9)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("gptq(w4,blocks=3)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("gptq(damp=-1)")), Error);
  for (const char* s : {"gptq(w4,g0,group_aware)", "gptq(w4,g128,group_aware,act_order)",
                        "gptq(w4,g128,group_aware,static_groups)"})
    EXPECT_THROW(make_quantizer(parse_spec(s)), Error) << s;
  try {
    make_quantizer(parse_spec("qptq(w4)"));
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("unknown algorithm 'qptq'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gptq"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rtn"), std::string::npos) << msg;
  }
}

TEST(InputStats, HessianMatchesDoubleReference) {
  Activations act(40, 5, 0.1f, 2, 20.0f, 91);
  Mat x1 = act.sample(3000, 92), x2 = act.sample(77, 93);  // > one internal chunk
  InputStats s(40);
  s.add_batch(x1);
  s.add_batch(x2);
  MatD x(3077, 40);
  x << x1.cast<double>(), x2.cast<double>();
  MatD ref = 2.0 / 3077 * x.transpose() * x;
  EXPECT_EQ(s.tokens(), 3077);
  EXPECT_LT((s.hessian() - ref).norm() / ref.norm(), 1e-5);
  EXPECT_TRUE(s.hessian().isApprox(s.hessian().transpose(), 0.0));
  VecD mabs = x.cwiseAbs().colwise().mean().transpose();
  EXPECT_LT((s.mean_abs() - mabs).norm() / mabs.norm(), 1e-12);
}

// Windows smaller than the internal fp32 chunk share one chunk; what is still pending when H is
// read must be included, and the result must not depend on how the tokens were batched.
TEST(InputStats, SmallBatchesShareChunksAndPendingTokensCount) {
  Activations act(40, 5, 0.1f, 2, 20.0f, 95);
  const Mat x = act.sample(5000, 96);
  InputStats whole(40), windows(40), few(40);
  whole.add_batch(x);
  for (int t0 = 0; t0 < 5000; t0 += 300) windows.add_batch(x.middleRows(t0, std::min(300, 5000 - t0)));
  few.add_batch(x.topRows(100));  // never reaches a full chunk: all of it is pending
  MatD xd = x.cast<double>();
  const MatD ref = 2.0 / 5000 * xd.transpose() * xd;
  EXPECT_LT((whole.hessian() - ref).norm() / ref.norm(), 1e-5);
  EXPECT_LT((windows.hessian() - ref).norm() / ref.norm(), 1e-5);
  const MatD top = xd.topRows(100);
  const MatD ref_few = 2.0 / 100 * top.transpose() * top;
  EXPECT_LT((few.hessian() - ref_few).norm() / ref_few.norm(), 1e-5);
  EXPECT_LT((few.hessian_block(8, 16) - ref_few.block(8, 8, 16, 16)).norm() / ref_few.norm(), 1e-5);
  VecD d = VecD::LinSpaced(40, 0.5, 2.0);
  few.scale_channels(d);  // folds the pending chunk first
  EXPECT_LT((few.hessian() - d.asDiagonal() * ref_few * d.asDiagonal()).norm() / ref_few.norm(), 1e-5);
}

TEST(RelativeOutputError, MatchesDirectComputation) {
  Activations act(48, 6, 0.1f, 1, 10.0f, 101);
  Mat x = act.sample(256, 102);
  InputStats s(48);
  s.add_batch(x);
  Mat w = synthetic_layer::weights(10, 48, 103);
  Mat wq = run("rtn(w3,g16)", w, s).dequantize();
  MatD xd = x.cast<double>();
  MatD y = xd * w.cast<double>().transpose(), yq = xd * wq.cast<double>().transpose();
  const double direct = (y - yq).squaredNorm() / y.squaredNorm();
  EXPECT_NEAR(relative_output_error(w, wq, s.hessian()), direct, 1e-5 * direct);
}

}  // namespace
}  // namespace ptq
