// QuantizedLayer parts: dequantization rules, Hadamard transforms, serialisation, storage bits.
#include <gtest/gtest.h>

#include <random>

#include "ptq/error.h"
#include "ptq/quantized_layer.h"

namespace ptq {
namespace {

Mat random_mat(int r, int c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d;
  Mat m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = d(rng);
  return m;
}

float f16(float x) { return f16_to_f32(f32_to_f16(x)); }

GridCodes random_grid(int n, int k, int bits, int group, uint64_t seed, bool natural = true) {
  std::mt19937_64 rng(seed);
  GridCodes g;
  g.rows = n;
  g.cols = k;
  g.grid.bits = bits;
  g.grid.group_size = group;
  const int groups = g.grid.num_groups(k);
  g.q.resize(size_t(n) * k);
  for (auto& c : g.q) c = uint8_t(rng() % (1u << bits));
  g.scales.resize(n, groups);
  g.zeros.resize(n, groups);
  for (Eigen::Index i = 0; i < g.scales.size(); ++i) {
    g.scales.data()[i] = f16(0.01f + float(rng() % 1000) * 1e-4f);
    g.zeros.data()[i] = float(rng() % (1u << bits));
  }
  g.g_idx.resize(k);
  for (int c = 0; c < k; ++c) g.g_idx[c] = c / group;
  if (!natural) std::shuffle(g.g_idx.begin(), g.g_idx.end(), rng);
  return g;
}

TEST(QuantGrid, NumGroupsNeverOverflows) {
  QuantGrid g;
  g.group_size = 2147483647;
  EXPECT_EQ(g.num_groups(4096), 1);
  g.group_size = 128;
  EXPECT_EQ(g.num_groups(576), 5);
  EXPECT_EQ(g.num_groups(2147483647), 16777216);
  g.group_size = -1;
  EXPECT_EQ(g.num_groups(100), 1);
}

TEST(GridCodes, BothRulesEvaluateAsWritten) {
  GridCodes g = random_grid(4, 64, 4, 32, 1);
  Mat zp = g.dequantize();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 64; ++c)
      EXPECT_EQ(zp(r, c), g.scales(r, c / 32) * (float(g.q[size_t(r) * 64 + c]) - g.zeros(r, c / 32)));
  g.rule = OffsetRule::kAdditive;
  g.zeros = -g.zeros.cwiseProduct(g.scales);
  Mat add = g.dequantize();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 64; ++c)
      EXPECT_EQ(add(r, c), g.scales(r, c / 32) * float(g.q[size_t(r) * 64 + c]) + g.zeros(r, c / 32));
  EXPECT_FALSE(g.integer_zeros());
}

TEST(Hadamard, KnownOrdersAreOrthogonal) {
  for (int order : {2, 4, 12, 20, 24, 44, 64, 72}) {
    ASSERT_TRUE(hadamard_factor_supported(order)) << order;
    Mat h = hadamard_matrix(order);
    Mat hht = h * h.transpose();
    EXPECT_TRUE(hht.isApprox(Mat::Identity(order, order) * float(order))) << order;
    EXPECT_EQ(h.cwiseAbs().minCoeff(), 1.0f);
    EXPECT_EQ(h.cwiseAbs().maxCoeff(), 1.0f);
  }
  EXPECT_FALSE(hadamard_factor_supported(36));
}

TEST(Hadamard, FactorsOfModelWidths) {
  auto product = [](const std::vector<int>& f) {
    int p = 1;
    for (int x : f) p *= x;
    return p;
  };
  for (int size : {64, 256, 576, 768, 1536, 4096, 11008 / 43 * 43}) {
    auto f = hadamard_factors(size);
    if (f.empty()) continue;
    EXPECT_EQ(product(f), size) << size;
  }
  EXPECT_EQ(hadamard_factors(1536), (std::vector<int>{128, 12}));
  EXPECT_EQ(hadamard_factors(768), (std::vector<int>{64, 12}));
  EXPECT_EQ(product(hadamard_factors(576)), 576);
  EXPECT_TRUE(hadamard_factors(172).empty());  // 4·43: no Paley factor of 43 or 86
}

InputTransform hadamard_transform(int size, int block, bool signs, uint64_t seed) {
  InputTransform t;
  t.kind = InputTransform::Kind::kHadamard;
  t.size = size;
  t.factors = hadamard_factors(block);
  if (signs) {
    std::mt19937_64 rng(seed);
    t.signs.resize(size);
    for (auto& s : t.signs) s = (rng() & 1) ? 1 : -1;
  }
  return t;
}

TEST(InputTransform, HadamardApplyMatchesItsMatrixAndIsOrthogonal) {
  for (auto [size, block] : {std::pair{96, 96}, {192, 48}, {64, 64}}) {
    InputTransform t = hadamard_transform(size, block, true, 3);
    Mat m = t.matrix();
    EXPECT_TRUE((m * m.transpose()).isApprox(Mat::Identity(size, size), 1e-5f));
    Mat x = random_mat(5, size, 4);
    Mat ref = (x.cast<double>() * m.cast<double>()).cast<float>();
    EXPECT_LT((t.apply(x) - ref).cwiseAbs().maxCoeff(), 1e-5f);
  }
}

TEST(InputTransform, FoldThenUnfoldIsTheIdentityForEveryKind) {
  const int k = 48;
  Mat w = random_mat(6, k, 5);
  std::vector<InputTransform> kinds;
  kinds.push_back(hadamard_transform(k, 48, true, 6));
  InputTransform dense;
  dense.kind = InputTransform::Kind::kDense;
  dense.size = k;
  dense.dense = Mat::Identity(k, k) + 0.1f * random_mat(k, k, 7);
  kinds.push_back(dense);
  InputTransform scale;
  scale.kind = InputTransform::Kind::kScale;
  scale.size = k;
  scale.scale = random_mat(k, 1, 8).col(0).cwiseAbs().array() + 0.5f;
  kinds.push_back(scale);
  Mat x = random_mat(3, k, 9);
  for (const auto& t : kinds) {
    Mat folded = t.fold_into_weight(w);
    // T(x)·W'ᵀ = x·Wᵀ
    EXPECT_LT((t.apply(x) * folded.transpose() - x * w.transpose()).cwiseAbs().maxCoeff(), 1e-4f);
    EXPECT_LT((t.unfold_from_weight(folded) - w).cwiseAbs().maxCoeff(), 1e-4f);
  }
}

QuantizedLayer full_layer(bool natural) {
  QuantizedLayer l = QuantizedLayer::from_grid(random_grid(16, 96, 3, 32, 11, natural));
  Mat sparse = Mat::Zero(16, 96);
  sparse(0, 5) = 1.5f;
  sparse(3, 0) = -0.25f;
  sparse(15, 95) = 2.0f;
  l.sparse = SparseResidual::from_dense(sparse);
  LowRankBranch b;
  b.l1 = random_mat(16, 2, 12).unaryExpr([](float v) { return f16(v); });
  b.l2 = random_mat(2, 96, 13).unaryExpr([](float v) { return f16(v); });
  l.low_rank = b;
  l.input_transform = hadamard_transform(96, 96, true, 14);
  return l;
}

TEST(QuantizedLayer, EffectiveWeightComposesEveryPart) {
  QuantizedLayer l = full_layer(true);
  Mat stored = l.grid.dequantize() + l.low_rank->l1 * l.low_rank->l2;
  stored(0, 5) += 1.5f;
  stored(3, 0) -= 0.25f;
  stored(15, 95) += 2.0f;
  EXPECT_LT((l.stored_weight() - stored).cwiseAbs().maxCoeff(), 1e-5f);
  Mat x = random_mat(4, 96, 15);
  // y = T(x)·stored ᵀ = x·effectiveᵀ
  Mat y_ref = l.input_transform->apply(x) * stored.transpose();
  EXPECT_LT((x * l.effective_weight().transpose() - y_ref).cwiseAbs().maxCoeff(), 1e-3f);
  EXPECT_EQ(l.part_names(), "grid+sparse+low_rank+input_transform");
}

TEST(QuantizedLayer, TensorsRoundTripExactly) {
  for (bool natural : {true, false}) {
    QuantizedLayer l = full_layer(natural);
    QuantizedLayer back = QuantizedLayer::from_tensors("layer", l.descriptor(), l.to_tensors());
    EXPECT_TRUE(back == l);
  }
  // Symmetric grids store no zeros; fractional zeros and additive offsets store floats.
  QuantizedLayer sym = QuantizedLayer::from_grid(random_grid(4, 64, 4, 32, 16));
  sym.grid.grid.sym = true;
  sym.grid.zeros.setConstant(8.0f);
  auto tensors = sym.to_tensors();
  for (const auto& t : tensors) EXPECT_NE(t.name, "grid.zeros");
  EXPECT_TRUE(QuantizedLayer::from_tensors("sym", sym.descriptor(), tensors) == sym);
  QuantizedLayer frac = QuantizedLayer::from_grid(random_grid(4, 64, 4, 32, 17));
  frac.grid.zeros(0, 0) = 3.3f;  // not fp16-exact: stored as F32
  EXPECT_TRUE(QuantizedLayer::from_tensors("frac", frac.descriptor(), frac.to_tensors()) == frac);
}

TEST(QuantizedLayer, CodedStatisticsDecodeToTheGridStatistics) {
  QuantizedLayer l = QuantizedLayer::from_grid(random_grid(32, 64, 3, 16, 18));
  CodedStatistic c;
  c.bits = 3;
  c.row_block = 16;
  c.group_block = 1;
  const int groups = int(l.grid.scales.cols());
  c.codes.resize(size_t(32) * groups);
  for (size_t i = 0; i < c.codes.size(); ++i) c.codes[i] = uint8_t(i % 8);
  c.scale2 = Mat::Constant(2, groups, 0.0078125f);
  c.zero2 = Mat::Constant(2, groups, -1.5f);
  for (int r = 0; r < 32; ++r)
    for (int g = 0; g < groups; ++g) l.grid.scales(r, g) = c.decode(r, g, groups);
  l.grid.coded_scales = c;
  QuantizedLayer back = QuantizedLayer::from_tensors("coded", l.descriptor(), l.to_tensors());
  EXPECT_TRUE(back == l);
  // 3-bit codes + 3-bit scale codes + fp16 scale2 and zero2 per 16 rows, + 3-bit zero points.
  const double expect = 32.0 * 64 * 3 + 32.0 * groups * 3 + 2.0 * groups * 32 + 32.0 * groups * 3;
  EXPECT_DOUBLE_EQ(l.storage_bits(), expect);
}

TEST(QuantizedLayer, StorageBitsOfAPlainGridMatchTheClassicFormula) {
  QuantizedLayer l = QuantizedLayer::from_grid(random_grid(64, 256, 4, 128, 19));
  EXPECT_DOUBLE_EQ(l.bits_per_weight(), 4.0 + (16.0 + 4.0) / 128.0);
  // Exact bytes of the stored tensors for fp16-exact statistics.
  double bytes = 0;
  for (const auto& t : l.to_tensors()) bytes += double(t.bytes.size());
  EXPECT_DOUBLE_EQ(bytes * 8, l.storage_bits());
  QuantizedLayer perm = QuantizedLayer::from_grid(random_grid(64, 256, 4, 128, 19, false));
  EXPECT_DOUBLE_EQ(perm.storage_bits(), l.storage_bits() + 256 * 32);
}

TEST(QuantizedLayer, MalformedTensorsAreErrorsNamingTheLayer) {
  QuantizedLayer l = full_layer(false);
  auto tensors = l.to_tensors();
  auto expect_error = [&](std::vector<LayerTensor> t, const std::string& desc) {
    try {
      QuantizedLayer::from_tensors("model.layers.0.mlp.up_proj", desc, t);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj"), std::string::npos) << e.what();
    }
  };
  expect_error(tensors, "[]");
  expect_error(tensors, "{\"rows\": 16}");
  auto missing = tensors;
  missing.erase(missing.begin());
  expect_error(missing, l.descriptor());
  auto extra = tensors;
  extra.push_back({"grid.extra", DType::U8, {1}, {0}});
  expect_error(extra, l.descriptor());
  auto bad_gidx = tensors;
  for (auto& t : bad_gidx)
    if (t.name == "grid.g_idx") t.bytes[0] = 0x7f;
  expect_error(bad_gidx, l.descriptor());
  auto bad_csr = tensors;
  for (auto& t : bad_csr)
    if (t.name == "sparse.col_ids") t.bytes[0] = 0xff, t.bytes[1] = 0x7f;
  expect_error(bad_csr, l.descriptor());
  auto short_codes = tensors;
  short_codes[0].bytes.pop_back();
  expect_error(short_codes, l.descriptor());
}

}  // namespace
}  // namespace ptq
