// SVDQuant (algorithms/svdquant.cpp): the spec, the smoothing fold and the branch keeping the
// group's function, the pipeline attaching the branch as the layer's low-rank part (beside a
// refiner's), and W4A4 on synthetic layers with outlier input channels.
#include <gtest/gtest.h>

#include <cmath>

#include "algorithms/synthetic_layer.h"
#include "cli/jobs/compress_job.h"
#include "formats/checkpoint_writer.h"
#include "formats/loaded_model.h"
#include "ptq/activation_quant.h"
#include "ptq/error.h"
#include "ptq/linear.h"
#include "ptq/stages.h"
#include "support/shared_data.h"
#include "support/text_compress.h"

namespace ptq {
namespace {

using synthetic_layer::Activations;

bool fp16_exact(const Mat& m) {
  for (Eigen::Index i = 0; i < m.size(); ++i)
    if (f16_to_f32(f32_to_f16(m.data()[i])) != m.data()[i]) return false;
  return true;
}

double relative(const Mat& a, const Mat& b) { return double((a - b).norm() / b.norm()); }

TEST(SvdQuant, SpecsPrintBackAndRefuseNonsense) {
  EXPECT_EQ(make_transform(parse_spec("svdquant"))->spec(), "svdquant(r32)");
  for (const char* text :
       {"svdquant(r32)", "svdquant(r16,alpha=0.3)", "svdquant(r8,hessian)", "svdquant(r4,alpha=0)"}) {
    const std::string canon = make_transform(parse_spec(text))->spec();
    EXPECT_EQ(canon, text);
    EXPECT_EQ(make_transform(parse_spec(canon))->spec(), canon);
  }
  EXPECT_EQ(make_transform(parse_spec("svdquant(r32,alpha=0.5,plain)"))->spec(), "svdquant(r32)");
  for (const char* bad : {"svdquant(r32,alpha=1.5)", "svdquant(r32,alpha=-1)", "svdquant(r0)", "svdquant(r32,bogus)"})
    EXPECT_THROW(make_transform(parse_spec(bad)), Error) << bad;
}

struct Group {
  Linear a, b;      // two layers reading the input (q and k, say)
  Vec gain;         // the RMSNorm gain producing it
  InputStats stats{64};
  Mat x;            // calibration input, before the gain
  std::unique_ptr<WeightQuantizer> quantizer = make_quantizer(parse_spec("rtn(w4,g32)"));
  GroupContext ctx;
  Group() {
    a.w = synthetic_layer::weights(48, 64, 1);
    b.w = synthetic_layer::weights(32, 64, 2);
    gain = Vec::LinSpaced(64, 0.5f, 1.5f);
    x = Activations(64, 8, 0.1f, 3, 30.0f, 3).sample(512, 4);
    stats.add_batch(x * gain.asDiagonal());
    ctx.input_name = "synthetic qk";
    ctx.names = {"synthetic.q_proj", "synthetic.k_proj"};
    ctx.layers = {&a, &b};
    ctx.prev_norm = &gain;
    ctx.stats = &stats;
    ctx.quantizer = quantizer.get();
  }
  Mat out(const Linear& l) const { return l.forward(x * gain.asDiagonal()); }
};

// Smoothing folded into the gain and each branch beside its residual: the group computes what it
// did, the branches are rank r and fp16-exact, outlier channels get the largest λ, and the
// statistics describe the smoothed input.
TEST(SvdQuant, TheTransformedGroupKeepsItsFunction) {
  Group g;
  const Mat ya = g.out(g.a), yb = g.out(g.b);
  const Vec gain0 = g.gain;
  const VecD max0 = g.stats.max_abs();
  QuantLog log;
  make_transform(parse_spec("svdquant(r8)"))->apply(g.ctx, &log);
  ASSERT_EQ(log.messages.size(), 1u);
  EXPECT_NE(log.messages[0].find("smoothing alpha=0.5"), std::string::npos) << log.messages[0];
  for (const Linear* l : {&g.a, &g.b}) {
    ASSERT_TRUE(l->branch);
    EXPECT_EQ(l->branch->rank(), 8);
    EXPECT_TRUE(fp16_exact(l->branch->l1) && fp16_exact(l->branch->l2));
  }
  EXPECT_LT(relative(g.out(g.a), ya), 1e-5);
  EXPECT_LT(relative(g.out(g.b), yb), 1e-5);
  const Vec lambda = gain0.cwiseQuotient(g.gain);
  Eigen::Index loudest = 0;
  max0.maxCoeff(&loudest);
  EXPECT_EQ(lambda.maxCoeff(), lambda[loudest]) << "the loudest input channel gets the largest scale";
  EXPECT_LT((g.stats.max_abs() - VecD(max0.cwiseQuotient(lambda.cast<double>()))).norm(), 1e-5 * max0.norm());
}

// The branch's rank: the residual left for the quantizer shrinks with r, and at full rank it is
// only the factors' fp16 rounding.
TEST(SvdQuant, TheResidualShrinksWithTheRank) {
  double last = 1e30;
  for (int r : {1, 4, 16, 32}) {
    Group g;
    make_transform(parse_spec("svdquant(r" + std::to_string(r) + ",alpha=0)"))->apply(g.ctx, nullptr);
    const double residual = double(g.b.w.norm());
    EXPECT_LT(residual, last) << "r" << r;
    last = residual;
    if (r == 32) {
      EXPECT_LT(residual, 4e-3 * double((g.b.w + g.b.branch->product()).norm())) << "b has rank 32";
    }
  }
}

// The producer of o_proj's input already carries its own branch (v_proj after the qkv group):
// the fold divides the branch's rows too and keeps v's output unchanged.
TEST(SvdQuant, FoldingIntoAProducerWithABranchKeepsItsOutput) {
  Linear v, o;
  v.w = synthetic_layer::weights(64, 48, 5);
  o.w = synthetic_layer::weights(40, 64, 6);
  const Mat x = Activations(48, 8, 0.1f, 2, 20.0f, 7).sample(256, 8);
  LowRankBranch b;
  b.l1 = synthetic_layer::weights(64, 4, 9);
  b.l2 = synthetic_layer::weights(4, 48, 10);
  for (Mat* m : {&b.l1, &b.l2})
    for (Eigen::Index i = 0; i < m->size(); ++i) m->data()[i] = f16_to_f32(f32_to_f16(m->data()[i]));
  v.branch = std::make_shared<const LowRankBranch>(b);
  const Mat y = o.forward(v.forward(x));
  InputStats stats(64);
  stats.add_batch(v.forward(x));
  auto quantizer = make_quantizer(parse_spec("rtn(w4,g32)"));
  GroupContext ctx{"synthetic o", {"synthetic.o_proj"}, {&o}, nullptr, &v, &stats, quantizer.get(), {}, 0};
  make_transform(parse_spec("svdquant(r4)"))->apply(ctx, nullptr);
  EXPECT_TRUE(fp16_exact(v.branch->l1));
  EXPECT_LT(relative(o.forward(v.forward(x)), y), 1e-5);
}

// W4A4 on a layer whose input has outlier channels: smoothing + a rank-16 branch on unquantized
// activations, the residual at 4 bits on 4-bit activations, beats 4-bit weights on 4-bit
// activations by a wide margin on held-out tokens.
TEST(SvdQuant, BeatsPlainQuantizationAtW4A4WithOutlierChannels) {
  const ActivationQuant a4{4, false, 1.0};
  Group plain, svd;
  const Mat held_out = Activations(64, 8, 0.1f, 3, 30.0f, 3).sample(512, 99) * plain.gain.asDiagonal();
  const Mat reference = held_out * plain.b.w.transpose();
  auto w4a4_error = [&](Group& g) {
    const QuantizedLayer q = g.quantizer->quantize(g.b.w, nullptr, nullptr);
    Linear quantized;
    quantized.w = q.stored_weight();
    quantized.act = a4;
    quantized.branch = g.b.branch;
    const Mat smoothed = held_out * plain.gain.cwiseQuotient(g.gain).cwiseInverse().asDiagonal();
    return relative(quantized.forward(smoothed), reference);
  };
  make_transform(parse_spec("svdquant(r16)"))->apply(svd.ctx, nullptr);
  const double e_plain = w4a4_error(plain), e_svd = w4a4_error(svd);
  RecordProperty("plain", std::to_string(e_plain));
  RecordProperty("svdquant", std::to_string(e_svd));
  EXPECT_LT(e_svd, 0.5 * e_plain) << "plain " << e_plain << " svdquant " << e_svd;
}

class SvdQuantCheckpoints : public test::PydocCompressTest {
 protected:
  SvdQuantCheckpoints() { prefix_ = "svdquant_"; }
};

// Every quantized layer carries the svdquant branch (concatenated with lorc's), the packed
// kernels compute what the layers' effective weights do, and act(a4) needs the ptq format.
TEST_F(SvdQuantCheckpoints, TheBranchIsTheLayersLowRankPart) {
  const std::string packed = compress("svdquant(r8)+rtn(w4,g64)+lorc(r4)", "ptq", "packed");
  EXPECT_EQ(checkpoint_recipe(packed), "svdquant(r8)+rtn(w4,g64)+lorc(r4)");
  const LoadedModel loaded = load_model_for_inference(packed);
  const auto layers = format_traits("ptq").read_layers(loaded.model);
  ASSERT_EQ(layers.size(), size_t(loaded.model.config().num_layers) * 7);
  LlamaModel dense = *loaded.forward;
  for (const auto& [name, layer] : layers) {
    ASSERT_TRUE(layer.low_rank) << name;
    EXPECT_EQ(layer.low_rank->rank(), 12) << name;
    const int l = std::stoi(name.substr(std::string("model.layers.").size()));
    Linear* lin = dense.blocks()[size_t(l)].linear(name.substr(layer_prefix(l).size()));
    lin->packed.reset();
    lin->w = layer.effective_weight();
  }
  EXPECT_LT(relative(loaded.forward->logits(test::spread_ids(40)), dense.logits(test::spread_ids(40))), 1e-5);
  EXPECT_THROW(compress("svdquant(r8)+act(a4)+rtn(w4,g64)", "fake", "fake_act"), Error);
  const std::string w4a4 = compress("svdquant(r8)+act(a4)+rtn(w4,g64)", "ptq", "w4a4");
  EXPECT_EQ(load_model_for_inference(w4a4).activations.spec(), "act(a4)");
}

}  // namespace
}  // namespace ptq
