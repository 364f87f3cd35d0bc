// SpQR: with outliers and the second level off (and GPTQ's first-level rule) the codes are
// GPTQ's; coded statistics decode to the grid's statistics; outliers are exact (grid value plus
// residual is the kept value); on synthetic layers with planted outliers SpQR's held-out error
// is below GPTQ's at no more average bits; storage bits follow the reference's formula; the
// result does not depend on the thread count. Synthetic layers: algorithms/synthetic_layer.h.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <gtest/gtest.h>
#include <omp.h>

#include <tuple>

#include "algorithms/gptq.h"
#include "algorithms/grid.h"
#include "algorithms/spqr.h"
#include "algorithms/synthetic_layer.h"
#include "ptq/error.h"
#include "ptq/input_stats.h"

namespace ptq {
namespace {

struct Layer {
  Mat w;
  InputStats calib{1}, held_out{1};
};

// Outlier input channels (25× larger activations) and, when asked, planted large weights the
// 3-bit grid of a 16-column group cannot hold.
Layer make_layer(int n, int k, uint64_t seed, int outlier_channels = 4, int planted = 0) {
  synthetic_layer::Activations act(k, k / 8, 0.1f, outlier_channels, 25.0f, seed);
  Layer l{synthetic_layer::weights(n, k, seed + 1), InputStats(k), InputStats(k)};
  std::mt19937_64 rng(seed + 5);
  for (int i = 0; i < planted; ++i) {
    const int r = int(rng() % uint64_t(n)), c = int(rng() % uint64_t(k));
    l.w(r, c) = ((rng() & 1) ? 1.0f : -1.0f) * (0.3f + 0.4f * float(rng() % 1000) / 1000.0f);
  }
  l.calib.add_batch(act.sample(4 * k, seed + 2));
  l.held_out.add_batch(act.sample(2 * k, seed + 3));
  return l;
}

double held_out_error(const Layer& l, const QuantizedLayer& q) {
  return relative_output_error(l.w, q.effective_weight(), l.held_out.hessian());
}

SpqrOptions spqr_options(int bits, int group, int qq, double outlier, bool act_order) {
  SpqrOptions o;
  o.bits = bits;
  o.group = group;
  o.qq_bits = qq;
  o.outlier = outlier;
  o.act_order = act_order;
  return o;
}

TEST(Spqr, WithOutliersAndSecondLevelOffTheCodesAreGptqs) {
  for (auto [n, k, group, act_order, damp] :
       {std::tuple{64, 256, 16, true, 1.0}, {80, 320, 16, false, 1.0}, {48, 200, 32, true, 0.01},
        {96, 384, 64, false, 0.1}}) {
    const Layer l = make_layer(n, k, 11 + uint64_t(k));
    SpqrOptions o = spqr_options(3, group, 0, 0.0, act_order);
    o.gptq_fit = true;
    o.damp = damp;
    GptqOptions go;
    go.grid.bits = 3;
    go.grid.group_size = group;
    go.grid.fp16_stats = true;
    go.act_order = act_order;
    go.damp = damp;
    const QuantizedLayer s = spqr_quantize(l.w, l.calib.hessian(), o, nullptr);
    const GridCodes g = gptq_quantize(l.w, l.calib.hessian(), go, nullptr);
    const std::string at = std::to_string(n) + "x" + std::to_string(k) + " g" + std::to_string(group);
    EXPECT_TRUE(s.grid.q == g.q) << at;
    EXPECT_TRUE(s.grid.scales == g.scales) << at;
    EXPECT_TRUE(s.grid.zeros == g.zeros) << at;
    EXPECT_TRUE(s.grid.g_idx == g.g_idx) << at;
    EXPECT_FALSE(s.sparse.has_value());
    EXPECT_FALSE(s.grid.coded_scales.has_value());
  }
}

TEST(Spqr, CodedStatisticsDecodeToTheGridStatistics) {
  const Layer l = make_layer(72, 192, 21);  // 72 rows: the last second-level block has 8
  const QuantizedLayer q = spqr_quantize(l.w, l.calib.hessian(), spqr_options(3, 16, 3, 0.2, true), nullptr);
  ASSERT_TRUE(q.grid.coded_scales && q.grid.coded_zeros);
  const int groups = int(q.grid.scales.cols());
  EXPECT_EQ(groups, 12);
  EXPECT_EQ(q.grid.coded_scales->scale2.rows(), 5);
  int fractional = 0;
  for (int r = 0; r < q.rows(); ++r)
    for (int g = 0; g < groups; ++g) {
      ASSERT_EQ(q.grid.coded_scales->decode(r, g, groups), q.grid.scales(r, g));
      ASSERT_EQ(q.grid.coded_zeros->decode(r, g, groups), q.grid.zeros(r, g));
      ASSERT_LE(q.grid.coded_scales->codes[size_t(r) * groups + g], 7);
      fractional += q.grid.zeros(r, g) != std::nearbyint(q.grid.zeros(r, g));
    }
  EXPECT_GT(fractional, 0) << "SpQR's zeros are fractional";
  for (Eigen::Index i = 0; i < q.grid.coded_scales->scale2.size(); ++i) {
    const float v = q.grid.coded_scales->scale2.data()[i];
    EXPECT_EQ(f16_to_f32(f32_to_f16(v)), v);
    EXPECT_GT(v, 0.0f);
  }
  // The codes are what the statistics give: every code is the reference's rounding of an
  // unquantized weight near it, and the dense part decodes through GridCodes::value.
  EXPECT_TRUE(q.grid.dequantize().allFinite());
}

TEST(Spqr, OutliersAreExactAndFindThePlantedWeights) {
  Layer l = make_layer(64, 256, 31, 4, 0);
  const int planted_r[] = {3, 17, 40, 63}, planted_c[] = {5, 100, 201, 255};
  for (int i = 0; i < 4; ++i) l.w(planted_r[i], planted_c[i]) = (i % 2 ? -1.0f : 1.0f) * 0.9f;
  const QuantizedLayer q = spqr_quantize(l.w, l.calib.hessian(), spqr_options(3, 16, 3, 0.2, true), nullptr);
  ASSERT_TRUE(q.sparse.has_value());
  const SparseResidual& s = *q.sparse;
  const double share = double(s.nnz()) / (64.0 * 256);
  EXPECT_GT(share, 0.0);
  EXPECT_LT(share, 0.1);
  Mat dense = q.grid.dequantize();
  const Mat eff = q.effective_weight();
  for (int i = 0; i < 4; ++i) {
    const int r = planted_r[i], c = planted_c[i];
    bool found = false;
    for (int e = s.row_offsets[r]; e < s.row_offsets[r + 1]; ++e)
      if (s.col_ids[e] == c) {
        found = true;
        // Grid + residual is the kept weight, close to the planted value (GPTQ has moved it by
        // the errors of earlier columns, little against 0.9).
        EXPECT_EQ(eff(r, c), dense(r, c) + s.values[e]);
        EXPECT_NEAR(eff(r, c), l.w(r, c), 0.1);
      }
    EXPECT_TRUE(found) << "planted weight (" << r << ", " << c << ") is not an outlier";
  }
  for (int r = 0; r < 64; ++r) {
    for (int e = s.row_offsets[r]; e < s.row_offsets[r + 1]; ++e) {
      EXPECT_EQ(f16_to_f32(f32_to_f16(s.values[e])), s.values[e]);
      if (e > s.row_offsets[r]) {
        EXPECT_LT(s.col_ids[e - 1], s.col_ids[e]);
      }
    }
  }
}

// SpQR (w3 g16 qq3 qg16, τ = 1) against GPTQ w3 g16 and w4 g128 (act order, like SpQR): no more
// average bits, lower held-out error, on layers with outlier input channels and planted large
// weights. All at damp 0.01: on these synthetic near-low-rank Hessians the reference's damp=1
// costs both methods ~30× in error (docs/spqr.md), which would compare damping, not methods.
TEST(Spqr, BeatsGptqOnPlantedOutliersAtNoMoreBits) {
  for (auto [n, k, seed] : {std::tuple{128, 256, 41u}, {96, 512, 42u}, {128, 384, 43u}}) {
    const Layer l = make_layer(n, k, seed, 8, n * k / 200);
    SpqrOptions o = spqr_options(3, 16, 3, 1.0, true);
    o.damp = 0.01;
    const QuantizedLayer s = spqr_quantize(l.w, l.calib.hessian(), o, nullptr);
    const double es = held_out_error(l, s);
    for (auto [bits, group] : {std::pair{3, 16}, {4, 128}}) {
      GptqOptions go;
      go.grid.bits = bits;
      go.grid.group_size = group;
      go.act_order = true;
      const QuantizedLayer g = QuantizedLayer::from_grid(gptq_quantize(l.w, l.calib.hessian(), go, nullptr));
      const double eg = held_out_error(l, g);
      const std::string at = std::to_string(n) + "x" + std::to_string(k) + ": spqr " +
                             std::to_string(s.bits_per_weight()) + " bits err " + std::to_string(es) + ", gptq w" +
                             std::to_string(bits) + " g" + std::to_string(group) + " " +
                             std::to_string(g.bits_per_weight()) + " bits err " + std::to_string(eg);
      EXPECT_LE(s.bits_per_weight(), g.bits_per_weight()) << at;
      EXPECT_LT(es, eg) << at;
    }
    // The outliers are what buys it: the same SpQR without them has a higher error.
    o.outlier = 0;
    EXPECT_LT(es, held_out_error(l, spqr_quantize(l.w, l.calib.hessian(), o, nullptr)));
  }
}

TEST(Spqr, StorageBitsAreTheReferenceFormulaPlusRowOffsetsAndPermutation) {
  const int n = 64, k = 256;
  const Layer l = make_layer(n, k, 51, 4, 40);
  for (bool act_order : {true, false}) {
    const SpqrOptions o = spqr_options(3, 16, 3, 0.2, act_order);
    const QuantizedLayer q = spqr_quantize(l.w, l.calib.hessian(), o, nullptr);
    ASSERT_TRUE(q.sparse.has_value());
    const double share = double(q.sparse->nnz()) / (double(n) * k);
    const double expected = spqr_reference_average_bits(o, share) * n * k + 32.0 * (n + 1) + (act_order ? 32.0 * k : 0);
    EXPECT_DOUBLE_EQ(q.storage_bits(), expected);
  }
  // The worked example: w4 g16 qq3 qg16 is 4.625 bits before outliers.
  EXPECT_DOUBLE_EQ(spqr_reference_average_bits(spqr_options(4, 16, 3, 0.2, true), 0.0), 4.625);
  EXPECT_DOUBLE_EQ(spqr_reference_average_bits(spqr_options(3, 16, 3, 0.2, true), 0.01), 3.625 + 0.32);
  // Second level off: two fp16 statistics per group.
  const SpqrOptions off = spqr_options(3, 16, 0, 0.0, false);
  const QuantizedLayer q = spqr_quantize(l.w, l.calib.hessian(), off, nullptr);
  EXPECT_DOUBLE_EQ(q.storage_bits(), spqr_reference_average_bits(off, 0) * n * k);
}

TEST(Spqr, IdenticalAtOneAndTwoThreads) {
  const Layer l = make_layer(320, 384, 61, 4, 300);  // two row chunks
  const SpqrOptions o = spqr_options(3, 16, 3, 0.2, true);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const QuantizedLayer one = spqr_quantize(l.w, l.calib.hessian(), o, nullptr);
  omp_set_num_threads(2);
  const QuantizedLayer two = spqr_quantize(l.w, l.calib.hessian(), o, nullptr);
  omp_set_num_threads(saved);
  EXPECT_TRUE(one == two);
  ASSERT_TRUE(one.sparse.has_value());
}

TEST(Spqr, SpecRoundTripsAndRejectsBadArguments) {
  auto q = make_quantizer(parse_spec("spqr"));
  EXPECT_EQ(q->spec(), "spqr(w3,g16,qq3,qg16)");
  EXPECT_EQ(make_quantizer(parse_spec("spqr(w3,g16,qq3,qg16,outlier=0.2,perm=act_order,damp=1.0)"))->spec(),
            "spqr(w3,g16,qq3,qg16)");
  const std::string custom = "spqr(w4,g32,qq0,qg8,outlier=0.5,perm=identity,damp=0.01,gptq_fit)";
  EXPECT_EQ(make_quantizer(parse_spec(custom))->spec(), custom);
  EXPECT_EQ(make_quantizer(parse_spec("spqr(qq=4,qg=8)"))->spec(), "spqr(w3,g16,qq4,qg8)");
  EXPECT_THROW(make_quantizer(parse_spec("spqr(perm=spearman)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("spqr(qg12)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("spqr(qq1)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("spqr(outlier=-1)")), Error);
  EXPECT_THROW(make_quantizer(parse_spec("spqr(frob)")), Error);
  Mat w = Mat::Ones(16, 16);
  w(0, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(spqr_quantize(w, MatD::Identity(16, 16), SpqrOptions{}, nullptr), Error);
}

}  // namespace
}  // namespace ptq
