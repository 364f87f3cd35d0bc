#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <vector>

#include "ptq/model.h"
#include "ptq/sha256.h"
#include "support/shared_data.h"
#include "support/synthetic.h"

namespace {

ptq::synthetic::LlamaShape small_shape(uint64_t seed) {
  ptq::synthetic::LlamaShape s;
  s.hidden = 64, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.ffn = 96, s.vocab = 128;
  s.outlier_channels = 3;
  s.outlier_scale = 50.0f;
  s.seed = seed;
  return s;
}

float median(std::vector<float> v) {
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Channels whose |gain| is at least 20x the median |gain|.
std::vector<int> outlier_channels(const ptq::Mat& gain) {
  std::vector<float> a(gain.data(), gain.data() + gain.size());
  for (float& x : a) x = std::abs(x);
  const float med = median(a);
  std::vector<int> out;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] >= 20.0f * med) out.push_back(int(i));
  return out;
}

}  // namespace

TEST(Synthetic, SameSeedSameBytes) {
  const std::string a = ptq::test::temp_dir("synthetic_a"), b = ptq::test::temp_dir("synthetic_b"),
                    c = ptq::test::temp_dir("synthetic_c");
  ptq::synthetic::write_llama(a, small_shape(42));
  ptq::synthetic::write_llama(b, small_shape(42));
  ptq::synthetic::write_llama(c, small_shape(43));
  for (const char* f : {"/config.json", "/model.safetensors"})
    EXPECT_EQ(ptq::sha256_file_hex(a + f), ptq::sha256_file_hex(b + f)) << f;
  EXPECT_NE(ptq::sha256_file_hex(a + "/model.safetensors"), ptq::sha256_file_hex(c + "/model.safetensors"));
  EXPECT_EQ(ptq::Model::open(a).checksum(), ptq::Model::open(b).checksum());
}

TEST(Synthetic, OpensWithPlantedOutliers) {
  const std::string dir = ptq::test::temp_dir("synthetic_outliers");
  const auto shape = small_shape(5);
  ptq::synthetic::write_llama(dir, shape);
  const ptq::Model m = ptq::Model::open(dir);
  EXPECT_EQ(m.config().hidden_size, 64);
  EXPECT_FALSE(m.config().tie_word_embeddings);
  const std::vector<int> planted = outlier_channels(m.weight(ptq::layer_prefix(0) + "input_layernorm.weight"));
  ASSERT_EQ(planted.size(), size_t(shape.outlier_channels));
  for (int i = 0; i < shape.layers; ++i) {
    EXPECT_EQ(outlier_channels(m.weight(ptq::layer_prefix(i) + "input_layernorm.weight")), planted) << i;
    EXPECT_EQ(outlier_channels(m.weight(ptq::layer_prefix(i) + "post_attention_layernorm.weight")), planted) << i;
  }
  // The residual stream entering layer 0 (embedding rows) carries the same channels.
  const ptq::Mat embed = m.weight("model.embed_tokens.weight");
  // Plain loops: GCC 12 flags Eigen's AVX-512 rsqrt/pow packets as maybe-uninitialized.
  ptq::Mat col_ss = ptq::Mat::Zero(1, embed.cols());
  for (int64_t r = 0; r < embed.rows(); ++r)
    for (int64_t c = 0; c < embed.cols(); ++c) col_ss(0, c) += embed(r, c) * embed(r, c);
  EXPECT_EQ(outlier_channels(col_ss), planted);
}

TEST(Synthetic, HeavyTailedWeights) {
  const std::string dir = ptq::test::temp_dir("synthetic_tails");
  auto shape = small_shape(9);
  shape.student_t_dof = 3.0f;
  ptq::synthetic::write_llama(dir, shape);
  const ptq::Mat w = ptq::Model::open(dir).weight("model.layers.0.mlp.up_proj.weight");
  double mean = 0, m2 = 0, m4 = 0;
  for (int64_t i = 0; i < w.size(); ++i) mean += w.data()[i];
  mean /= double(w.size());
  for (int64_t i = 0; i < w.size(); ++i) {
    const double d = (w.data()[i] - mean) * (w.data()[i] - mean);
    m2 += d;
    m4 += d * d;
  }
  const double var = m2 / double(w.size());
  const double kurt = m4 / double(w.size()) / (var * var);
  EXPECT_GT(kurt, 4.0) << "Student-t weights should be heavier-tailed than a Gaussian (kurtosis 3)";
  EXPECT_LT(std::sqrt(var), 0.5) << "weights should be scaled by 1/sqrt(fan_in)";
}
