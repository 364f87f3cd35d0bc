#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include <gtest/gtest.h>

#include <random>

#include "algorithms/grid.h"
#include "algorithms/synthetic_layer.h"
#include "ptq/error.h"
#include "ptq/stages.h"

namespace ptq {
namespace {

Mat heavy_tailed(int n, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> t(3.0f);
  Mat m(n, k);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = 0.02f * t(rng);
  return m;
}

QuantGrid make_grid(int bits, int group, bool sym, bool mse = false) {
  QuantGrid g;
  g.bits = bits;
  g.group_size = group;
  g.sym = sym;
  g.mse = mse;
  return g;
}

double pow_error(const float* x, int n, grid::Params p, int maxq, double norm) {
  double e = 0;
  for (int i = 0; i < n; ++i) e += std::pow(std::fabs(grid::fake_quantize(x[i], p, maxq) - x[i]), norm);
  return e;
}

TEST(Grid, CodesInRangeAndErrorWithinHalfScale) {
  Mat w = heavy_tailed(16, 200, 1);
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true})
      for (int group : {-1, 32, 64}) {
        QuantGrid g = make_grid(bits, group, sym);
        GridCodes q = grid::quantize_rtn(w, g);
        Mat wq = q.dequantize();
        for (int r = 0; r < w.rows(); ++r)
          for (int c = 0; c < w.cols(); ++c) {
            ASSERT_LE(q.q[size_t(r) * w.cols() + c], g.max_q());
            const float scale = q.scales(r, q.g_idx[c]), zero = q.zeros(r, q.g_idx[c]);
            const float lo = -zero * scale, hi = (g.max_q() - zero) * scale;
            if (w(r, c) < lo || w(r, c) > hi) continue;  // outside the representable range
            EXPECT_LE(std::fabs(wq(r, c) - w(r, c)), 0.5f * scale * (1 + 1e-5f))
                << "bits " << bits << " sym " << sym << " group " << group;
          }
      }
}

TEST(Grid, AsymmetricCoversTheWholeGroup) {
  // With lo <= 0 <= hi and a rounded zero, every value of the group is within scale/2.
  Mat w = heavy_tailed(8, 128, 2);
  for (int bits = 2; bits <= 8; ++bits) {
    QuantGrid g = make_grid(bits, 32, false);
    GridCodes q = grid::quantize_rtn(w, g);
    Mat wq = q.dequantize();
    for (int r = 0; r < w.rows(); ++r)
      for (int c = 0; c < w.cols(); ++c)
        EXPECT_LE(std::fabs(wq(r, c) - w(r, c)), 0.5f * q.scales(r, c / 32) * (1 + 1e-5f));
  }
}

// GPTQ v1's min_zero = 1: groups with no negative weight (zero 0 unconstrained) get zero 1 and
// still hold every value within scale/2; other groups are fitted exactly as without it.
TEST(Grid, MinZeroKeepsEveryValueWithinHalfScale) {
  Mat w = heavy_tailed(8, 128, 4);
  for (int c = 0; c < 32; ++c) w.col(c) = w.col(c).cwiseAbs();  // group 0 of every row: w ≥ 0
  for (int bits : {2, 3, 4, 8})
    for (bool fp16 : {false, true}) {
      QuantGrid g = make_grid(bits, 32, false);
      g.fp16_stats = fp16;
      const GridCodes plain = grid::quantize_rtn(w, g);
      g.min_zero = 1;
      const GridCodes q = grid::quantize_rtn(w, g);
      const Mat wq = q.dequantize();
      int moved = 0;
      for (int r = 0; r < w.rows(); ++r)
        for (int j = 0; j < 4; ++j) {
          ASSERT_GE(q.zeros(r, j), 1.0f) << "bits " << bits;
          if (plain.zeros(r, j) >= 1.0f) {
            EXPECT_EQ(q.zeros(r, j), plain.zeros(r, j));
            EXPECT_EQ(q.scales(r, j), plain.scales(r, j));
          } else {
            ++moved;
          }
          for (int c = 32 * j; c < 32 * j + 32; ++c)
            // fp16 rounding of the scale may push the group's max up to 2^-11 of itself past the top code.
            EXPECT_LE(std::fabs(wq(r, c) - w(r, c)),
                      0.5f * q.scales(r, j) * (1 + 1e-5f) + (fp16 ? std::fabs(w(r, c)) * 0x1p-11f : 0.0f))
                << "bits " << bits;
        }
      EXPECT_GE(moved, w.rows()) << "bits " << bits;  // at least the all-positive groups
    }
}

TEST(Grid, PartialLastGroup) {
  Mat w = heavy_tailed(5, 172, 3);
  QuantGrid g = make_grid(4, 32, false);
  GridCodes q = grid::quantize_rtn(w, g);
  ASSERT_EQ(g.num_groups(172), 6);
  ASSERT_EQ(q.scales.cols(), 6);
  EXPECT_EQ(q.g_idx[159], 4);
  EXPECT_EQ(q.g_idx[160], 5);
  EXPECT_EQ(q.g_idx[171], 5);
  EXPECT_EQ(grid::group_width(g, 172, 5), 12);
  for (int r = 0; r < 5; ++r) {
    grid::Params p = grid::find_params(&w(r, 160), 12, g);  // only the 12 real columns
    EXPECT_EQ(q.scales(r, 5), p.scale);
    EXPECT_EQ(q.zeros(r, 5), p.zero);
  }
}

TEST(Grid, SymmetricZeroIsFixed) {
  Mat w = heavy_tailed(6, 96, 4);
  for (int bits = 2; bits <= 8; ++bits)
    for (bool mse : {false, true}) {
      GridCodes q = grid::quantize_rtn(w, make_grid(bits, 32, true, mse));
      EXPECT_TRUE((q.zeros.array() == float((1 << bits) / 2)).all()) << bits;
    }
}

TEST(Grid, MseSearchNeverWorseThanPlain) {
  Mat w = heavy_tailed(32, 256, 5);
  double plain_sq = 0, mse_sq = 0;
  for (int bits : {2, 3, 4})
    for (bool sym : {false, true})
      for (int r = 0; r < w.rows(); ++r)
        for (int c0 = 0; c0 < 256; c0 += 64) {
          const float* x = &w(r, c0);
          grid::Params plain = grid::find_params(x, 64, make_grid(bits, 64, sym, false));
          grid::Params best = grid::find_params(x, 64, make_grid(bits, 64, sym, true));
          const int maxq = (1 << bits) - 1;
          // The search objective (norm 2.4) can only improve: p = 1 is among the candidates.
          EXPECT_LE(pow_error(x, 64, best, maxq, 2.4), pow_error(x, 64, plain, maxq, 2.4));
          plain_sq += pow_error(x, 64, plain, maxq, 2.0);
          mse_sq += pow_error(x, 64, best, maxq, 2.0);
        }
  EXPECT_LT(mse_sq, plain_sq);  // and on heavy tails the squared error drops overall
}

TEST(Grid, RoundHalfToEvenAndClamp) {
  grid::Params p{1.0f, 0.0f};
  EXPECT_EQ(grid::quantize_code(2.5f, p, 15), 2.0f);
  EXPECT_EQ(grid::quantize_code(3.5f, p, 15), 4.0f);
  EXPECT_EQ(grid::quantize_code(-0.5f, p, 15), 0.0f);
  EXPECT_EQ(grid::quantize_code(99.0f, p, 15), 15.0f);
  EXPECT_EQ(grid::quantize_code(-7.0f, p, 15), 0.0f);
  grid::Params z{0.5f, 8.0f};
  EXPECT_EQ(grid::dequantize_code(grid::quantize_code(0.0f, z, 15), z), 0.0f);
}

TEST(Grid, AllZeroGroupHasNonZeroScale) {
  std::vector<float> zeros(32, 0.0f);
  for (bool sym : {false, true}) {
    grid::Params p = grid::find_params(zeros.data(), 32, make_grid(4, 32, sym, true));
    EXPECT_GT(p.scale, 0.0f);
    EXPECT_EQ(grid::fake_quantize(0.0f, p, 15), 0.0f);
  }
}

TEST(Grid, ValidateBitsAndGroups) {
  EXPECT_THROW(grid::validate(make_grid(1, 32, false), "t"), Error);
  EXPECT_THROW(grid::validate(make_grid(9, 32, false), "t"), Error);
  EXPECT_THROW(grid::validate(make_grid(4, -5, false), "t"), Error);
  EXPECT_NO_THROW(grid::validate(make_grid(4, -1, false), "t"));
}

// The additive grid (GGUF Q4_1/Q5_1): offset = the group's fp16 minimum, scale = fp16 range/maxq,
// value = scale·code + offset, every value of the group within half a step (plus the offset's
// fp16 rounding), and a range that need not include zero.
TEST(Grid, AdditiveFitsMinimumToMaximum) {
  Mat w = heavy_tailed(16, 256, 9);
  w.array() += 0.05f;  // groups mostly away from zero, where a zero point wastes levels
  for (int bits : {4, 5}) {
    QuantGrid g = make_grid(bits, 32, false);
    g.additive = true;
    g.fp16_stats = true;
    const GridCodes q = grid::quantize_rtn(w, g);
    EXPECT_EQ(q.rule, OffsetRule::kAdditive);
    const Mat wq = q.dequantize();
    for (int r = 0; r < w.rows(); ++r)
      for (int gi = 0; gi < 8; ++gi) {
        const float d = q.scales(r, gi), m = q.zeros(r, gi);
        const auto group = w.row(r).segment(gi * 32, 32);
        EXPECT_EQ(m, f16_to_f32(f32_to_f16(group.minCoeff())));
        EXPECT_EQ(d, f16_to_f32(f32_to_f16((group.maxCoeff() - group.minCoeff()) / float(g.max_q()))));
        for (int c = gi * 32; c < gi * 32 + 32; ++c) {
          const float code = float(q.q[size_t(r) * w.cols() + c]);
          ASSERT_EQ(wq(r, c), d * code + m);
          EXPECT_LE(std::fabs(wq(r, c) - w(r, c)), 0.5f * d * (1 + 1e-3f) + std::fabs(m - group.minCoeff()) + 1e-7f);
        }
      }
    // Zero-point grids of the same width are worse on these groups.
    const GridCodes zp = grid::quantize_rtn(w, make_grid(bits, 32, false));
    EXPECT_LT((wq - w).squaredNorm(), (zp.dequantize() - w).squaredNorm()) << bits;
  }
  // A constant group is held exactly by code 0 (fp16 offsets: its fp16 rounding).
  std::vector<float> constant(32, 0.3f);
  QuantGrid g = make_grid(4, 32, false);
  g.additive = true;
  const grid::Params p = grid::find_params(constant.data(), 32, g);
  EXPECT_GT(p.scale, 0.0f);
  EXPECT_EQ(grid::fake_quantize(0.3f, p, 15), 0.3f);
  g.sym = true;
  EXPECT_THROW(grid::validate(g, "t"), Error);
}

// ggml's Q4_0/Q5_0 scaling (QuantGrid::signed_extreme): each group's value of largest magnitude
// is exactly code 0's value (scale = m / −2^(b−1), negative when m > 0), every other value within
// half a step, and that beats the reference's [−amax, amax] grid, which clips a positive extreme.
TEST(Grid, SignedExtremeKeepsTheLargestValueExact) {
  Mat w = heavy_tailed(32, 256, 12);
  for (int bits : {4, 5, 8}) {
    QuantGrid g = make_grid(bits, 32, true);
    g.signed_extreme = true;
    const GridCodes q = grid::quantize_rtn(w, g);
    const Mat wq = q.dequantize();
    int negative = 0;
    for (int r = 0; r < w.rows(); ++r)
      for (int gi = 0; gi < 8; ++gi) {
        const auto group = w.row(r).segment(gi * 32, 32);
        Eigen::Index at = 0;
        group.cwiseAbs().maxCoeff(&at);
        EXPECT_EQ(wq(r, gi * 32 + int(at)), group[at]) << bits;
        EXPECT_EQ(q.scales(r, gi) < 0, group[at] > 0);
        negative += q.scales(r, gi) < 0;
        const float s = q.scales(r, gi), half = float((g.max_q() + 1) / 2);
        const float lo = std::min(-half * s, (half - 1) * s), hi = std::max(-half * s, (half - 1) * s);
        for (int c = 0; c < 32; ++c)
          if (group[c] >= lo && group[c] <= hi) {  // the opposite side stops one level short of |m|
            EXPECT_LE(std::fabs(wq(r, gi * 32 + c) - group[c]), 0.5f * std::fabs(s) * (1 + 1e-5f));
          }
      }
    EXPECT_GT(negative, 0);
    const GridCodes plain = grid::quantize_rtn(w, make_grid(bits, 32, true));
    EXPECT_LT((wq - w).squaredNorm(), (plain.dequantize() - w).squaredNorm()) << bits;
  }
}

// ggml's K-quant super-blocks (GridConstraints::k_quant_super_blocks): every group's scale (and
// offset) is exactly its code's decoded value, the codes in the sub-block code range (never a zero
// scale), the storage exactly ggml's bytes per 256 weights, an all-zero super-block exact, and
// every value within half a step of its group's grid where the grid covers it.
TEST(Grid, SuperBlockCodesAreTheFittedStatistics) {
  Mat w = heavy_tailed(24, 768, 14);
  w.row(3).segment(256, 256).setZero();  // a whole super-block of zeros
  w.row(5).segment(32, 32).setConstant(0.01f);  // a constant group
  GridConstraints k;
  k.fp16_statistics = true;
  k.signed_extreme = true;
  k.k_quant_super_blocks = true;
  struct Case {
    const char* spec;
    double bytes_per_256;  // ggml's block sizes
  };
  for (Case c : {Case{"rtn(w2,g16)", 84}, Case{"rtn(w3,g16,sym)", 110}, Case{"rtn(w4,g32)", 144},
                 Case{"rtn(w5,g32)", 176}, Case{"rtn(w6,g16,sym)", 210}}) {
    const QuantizedLayer l = make_quantizer(parse_spec(c.spec), k)->quantize(w, nullptr, nullptr);
    const GridCodes& q = l.grid;
    ASSERT_GT(q.grid.super_groups, 0) << c.spec;
    EXPECT_DOUBLE_EQ(l.storage_bits(), double(w.size()) / 256 * c.bytes_per_256 * 8) << c.spec;
    const int groups = int(q.scales.cols()), cmax = (1 << q.grid.sub_bits) - 1, half2 = 1 << (q.grid.sub_bits - 1);
    const Mat wq = q.dequantize();
    for (int r = 0; r < q.rows; ++r)
      for (int gi = 0; gi < groups; ++gi) {
        const size_t at = size_t(r) * groups + gi;
        const int sc = q.coded_scales->codes[at];
        EXPECT_EQ(q.scales(r, gi), q.coded_scales->decode(r, gi, groups)) << c.spec;
        if (q.grid.sym) {
          EXPECT_NE(sc, half2) << c.spec;
        } else {
          EXPECT_TRUE(sc >= 1 && sc <= cmax) << c.spec;
        }
        if (q.coded_zeros) {
          EXPECT_EQ(q.zeros(r, gi), q.coded_zeros->decode(r, gi, groups)) << c.spec;
          EXPECT_LE(q.zeros(r, gi), 0.0f);
        }
        // The grid's span: codes 0 and maxq decoded.
        const float s = q.scales(r, gi), z = q.zeros(r, gi), top = float(q.grid.max_q());
        const float a = q.grid.sym ? s * (0.0f - z) : z, b = q.grid.sym ? s * (top - z) : s * top + z;
        for (int col = gi * q.grid.group_size; col < (gi + 1) * q.grid.group_size; ++col) {
          const float x = w(r, col);
          if (x >= std::min(a, b) && x <= std::max(a, b)) {
            EXPECT_LE(std::fabs(wq(r, col) - x), 0.5f * std::fabs(s) * (1 + 1e-5f)) << c.spec;
          }
        }
      }
    for (int col = 256; col < 512; ++col) EXPECT_EQ(wq(3, col), 0.0f) << c.spec;
  }
}

TEST(Rtn, CanonicalSpecAndPerChannel) {
  EXPECT_EQ(make_quantizer(parse_spec("rtn"))->spec(), "rtn(w4,g128)");
  EXPECT_EQ(make_quantizer(parse_spec("rtn(g-1,w3,sym)"))->spec(), "rtn(w3,g0,sym)");
  EXPECT_EQ(make_quantizer(parse_spec("rtn(w2,g0,mse)"))->spec(), "rtn(w2,g0,mse)");
  EXPECT_THROW(make_quantizer(parse_spec("rtn(act_order)")), Error);
  auto q = make_quantizer(parse_spec("rtn(w4,g0)"));
  EXPECT_EQ(q->grid().group_size, -1);
  Mat w = heavy_tailed(4, 100, 6);
  GridCodes out = q->quantize(w, nullptr, nullptr).grid;
  EXPECT_EQ(out.scales.cols(), 1);
  for (int32_t g : out.g_idx) EXPECT_EQ(g, 0);
}

TEST(Rtn, MatchesGridDirectly) {
  Mat w = heavy_tailed(7, 90, 7);
  GridCodes a = make_quantizer(parse_spec("rtn(w3,g32,sym)"))->quantize(w, nullptr, nullptr).grid;
  GridCodes b = grid::quantize_rtn(w, make_grid(3, 32, true));
  EXPECT_EQ(a.q, b.q);
  EXPECT_TRUE(a.dequantize() == b.dequantize());
}

}  // namespace
}  // namespace ptq
