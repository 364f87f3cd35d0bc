// AWQ transform: spec, statistics rescaling, the search objective against brute force,
// quality on synthetic layers with salient channels, determinism, and full-precision
// equivalence of the folded stories260K blocks.
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "algorithms/awq.h"
#include "algorithms/awq_search.h"
#include "algorithms/grid.h"
#include "algorithms/synthetic_layer.h"
#include "ptq/error.h"
#include "ptq/forward.h"
#include "ptq/module_probe.h"
#include "formats/loaded_model.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

using synthetic_layer::Activations;

// ---- Spec -----------------------------------------------------------------------------------
TEST(AwqSpec, CanonicalRoundTrip) {
  EXPECT_EQ(make_transform(parse_spec("awq"))->spec(), "awq");
  EXPECT_EQ(make_transform(parse_spec("awq(grid=20,clip)"))->spec(), "awq");
  EXPECT_EQ(make_transform(parse_spec("awq(scale,clip,max_shrink=0.5,clip_grid=20)"))->spec(), "awq");
  for (const char* text : {"awq(grid=10)", "awq(no_clip)", "awq(grid=8,clip_grid=40,max_shrink=0.25,no_scale)"}) {
    const std::string canon = make_transform(parse_spec(text))->spec();
    EXPECT_EQ(canon, text);
    EXPECT_EQ(make_transform(parse_spec(canon))->spec(), canon);
  }
  EXPECT_TRUE(is_transform("awq"));
  const auto recipe = parse_recipe("awq+gptq(w4,g32)");
  ASSERT_EQ(recipe.size(), 2u);
  EXPECT_EQ(make_transform(recipe[0])->spec(), "awq");
}

TEST(AwqSpec, ObjectiveAndTokensRoundTrip) {
  EXPECT_EQ(make_transform(parse_spec("awq(objective=module,tokens=4096)"))->spec(), "awq");
  for (const char* text : {"awq(objective=full)", "awq(objective=block)", "awq(tokens=512)"}) {
    EXPECT_EQ(make_transform(parse_spec(text))->spec(), text);
  }
  EXPECT_EQ(make_transform(parse_spec("awq"))->probe_tokens(), 4096);
  EXPECT_EQ(make_transform(parse_spec("awq(tokens=100)"))->probe_tokens(), 100);
  EXPECT_EQ(make_transform(parse_spec("awq(objective=full)"))->probe_tokens(), 0);
  EXPECT_EQ(make_transform(parse_spec("awq(no_scale)"))->probe_tokens(), 0);
}

TEST(AwqSpec, RejectsBadArguments) {
  for (const char* text : {"awq(grid=0)", "awq(max_shrink=1)", "awq(no_scale,no_clip)",
                           "awq(clip,no_clip)", "awq(w4)", "awq(grid=x)", "awq(clip=1)",
                           "awq(objective=layer)", "awq(tokens=0)"})
    EXPECT_THROW(make_transform(parse_spec(text)), Error) << text;
}

// ---- InputStats additions -------------------------------------------------------------------
TEST(AwqStats, ScaleChannelsMatchesScaledInput) {
  Activations act(48, 6, 0.1f, 2, 10.0f, 3);
  const Mat x = act.sample(300, 4);
  Vec d(48);
  for (int c = 0; c < 48; ++c) d[c] = 0.25f + 0.05f * float(c);
  InputStats a(48), b(48);
  a.add_batch(x);
  a.scale_channels(d.cast<double>());
  b.add_batch(x * d.asDiagonal());
  EXPECT_LT((a.hessian() - b.hessian()).norm(), 1e-5 * b.hessian().norm());
  EXPECT_LT((a.mean_abs() - b.mean_abs()).norm(), 1e-5 * b.mean_abs().norm());
  EXPECT_EQ(a.hessian_block(16, 20), a.hessian().block(16, 16, 20, 20));
}

// ---- Objective ------------------------------------------------------------------------------
struct Layer {
  Mat w;
  InputStats calib{1}, held_out{1};
};

Layer make_layer(int n, int k, uint64_t seed) {
  Activations act(k, k / 8, 0.1f, /*outliers=*/8, /*outlier_scale=*/25.0f, seed);
  Layer l{synthetic_layer::weights(n, k, seed + 1), InputStats(k), InputStats(k)};
  l.calib.add_batch(act.sample(2048, seed + 2));
  l.held_out.add_batch(act.sample(2048, seed + 3));
  return l;
}

TEST(AwqObjective, SingleBlockEqualsFullOutputError) {
  Layer l = make_layer(40, 96, 7);
  QuantGrid g{4, -1, false, false};  // per-channel: 96 columns = one tile of width <= kTile
  const Mat w_hat = grid::quantize_rtn(l.w, g).dequantize();
  const awq::ObjectiveBlocks blocks = awq::objective_blocks(l.calib, g);
  ASSERT_EQ(blocks.h.size(), 1u);
  const double full = relative_output_error(l.w, w_hat, l.calib.hessian());
  const double wHw = (l.w.cast<double>() * l.calib.hessian() * l.w.cast<double>().transpose()).trace();
  EXPECT_NEAR(awq::block_error(l.w, w_hat, blocks) / wHw, full, 1e-5 * full);
}

TEST(AwqObjective, BlockDiagonalMatchesBruteForce) {
  Layer l = make_layer(70, 100, 8);  // groups of 32 with a partial last group of 4
  QuantGrid g{3, 32, false, false};
  const Mat w_hat = grid::quantize_rtn(l.w, g).dequantize();
  const MatD h = l.calib.hessian();
  const MatD d = (l.w - w_hat).cast<double>();
  double expect = 0;
  for (int c0 = 0; c0 < 100; c0 += 32) {
    const int n = std::min(32, 100 - c0);
    expect += (d.middleCols(c0, n) * h.block(c0, c0, n, n) * d.middleCols(c0, n).transpose()).trace();
  }
  EXPECT_NEAR(awq::block_error(l.w, w_hat, awq::objective_blocks(l.calib, g)), expect, 1e-5 * expect);
}

TEST(AwqObjective, ClipSearchPicksTheBestRatioOfEachGroup) {
  Layer l = make_layer(20, 64, 9);
  QuantGrid g{3, 32, false, false};
  const Mat max_val = awq::search_clip(l.w, l.calib, g, 20, 0.5);
  const MatD h = l.calib.hessian();
  int shrunk = 0;
  for (int r = 0; r < 20; ++r)
    for (int gi = 0; gi < 2; ++gi) {
      const Mat w = l.w.block(r, gi * 32, 1, 32);
      const MatD hb = h.block(gi * 32, gi * 32, 32, 32);
      const float org = w.cwiseAbs().maxCoeff();
      double best = 1e300, best_m = -1;
      for (int i = 0; i < 10; ++i) {
        const float m = org * float(1.0 - i / 20.0);
        Mat c = w.cwiseMax(-m).cwiseMin(m);
        const grid::Params p = grid::find_params(c.data(), 32, g);
        for (int j = 0; j < 32; ++j) c(0, j) = grid::fake_quantize(c(0, j), p, g.max_q());
        const MatD dd = (w - c).cast<double>();
        const double e = (dd * hb * dd.transpose())(0, 0);
        if (e < best * (1 - 1e-6)) best = e, best_m = m;  // fp32 products: ignore near-ties
      }
      const double chosen = max_val(r, gi);
      if (chosen != best_m) {  // only a near-tie may differ
        Mat c = w.cwiseMax(-float(chosen)).cwiseMin(float(chosen));
        const grid::Params p = grid::find_params(c.data(), 32, g);
        for (int j = 0; j < 32; ++j) c(0, j) = grid::fake_quantize(c(0, j), p, g.max_q());
        const MatD dd = (w - c).cast<double>();
        EXPECT_NEAR((dd * hb * dd.transpose())(0, 0), best, 1e-5 * best) << r << "," << gi;
      }
      shrunk += chosen < org;
    }
  EXPECT_GT(shrunk, 0) << "3-bit groups with heavy tails should shrink somewhere";
}

// ---- Quality on synthetic layers ------------------------------------------------------------
// One layer after an RMSNorm gain of ones: the transform folds 1/s into the gain, so the
// quantized layer's effective weight in the original input space is Q(W·diag(s))·diag(gain).
double awq_rtn_held_out_error(const Layer& l, const std::string& awq_spec, const std::string& rtn_spec) {
  Linear layer{l.w, nullptr, Vec(), nullptr};
  Vec gain = Vec::Ones(l.w.cols());
  InputStats stats = l.calib;
  auto quantizer = make_quantizer(parse_spec(rtn_spec));
  GroupContext ctx;
  ctx.input_name = "synthetic";
  ctx.names = {"synthetic.down_proj"};
  ctx.layers = {&layer};
  ctx.prev_norm = &gain;
  ctx.stats = &stats;
  ctx.quantizer = quantizer.get();
  QuantLog log;
  make_transform(parse_spec(awq_spec))->apply(ctx, &log);
  EXPECT_EQ(log.messages.size(), 1u);
  Mat effective = quantizer->quantize(layer.w, nullptr, nullptr).grid.dequantize() * gain.asDiagonal();
  return relative_output_error(l.w, effective, l.held_out.hessian());
}

class AwqVsRtn : public ::testing::TestWithParam<int> {};

TEST_P(AwqVsRtn, LowerHeldOutError) {
  const int bits = GetParam();
  Layer l = make_layer(256, 512, 11);
  const std::string rtn_spec = "rtn(w" + std::to_string(bits) + ",g128)";
  const double rtn = relative_output_error(
      l.w, make_quantizer(parse_spec(rtn_spec))->quantize(l.w, nullptr, nullptr).grid.dequantize(),
      l.held_out.hessian());
  const double scale_only = awq_rtn_held_out_error(l, "awq(no_clip)", rtn_spec);
  const double full = awq_rtn_held_out_error(l, "awq", rtn_spec);
  RecordProperty("rtn", std::to_string(rtn));
  RecordProperty("awq", std::to_string(full));
  EXPECT_LT(scale_only, rtn) << "w" << bits;
  EXPECT_LT(full, scale_only) << "w" << bits;
  EXPECT_LT(full, 0.8 * rtn) << "w" << bits << ": salient channels should make AWQ win clearly";
}

INSTANTIATE_TEST_SUITE_P(Bits, AwqVsRtn, ::testing::Values(4, 3));

TEST(Awq, UpdatesStatisticsToTheScaledInput) {
  Activations act(64, 8, 0.1f, 2, 25.0f, 5);
  const Mat x = act.sample(512, 6);
  Linear layer{synthetic_layer::weights(32, 64, 7), nullptr, Vec(), nullptr};
  Linear prev{synthetic_layer::weights(64, 16, 8), nullptr, Vec::Ones(64), nullptr};  // produces x
  InputStats stats(64);
  stats.add_batch(x);
  auto quantizer = make_quantizer(parse_spec("rtn(w3,g32)"));
  const Mat w0 = layer.w, prev0 = prev.w;
  GroupContext ctx;
  ctx.input_name = "synthetic";
  ctx.names = {"synthetic.o_proj"};
  ctx.layers = {&layer};
  ctx.prev_linear = &prev;
  ctx.stats = &stats;
  ctx.quantizer = quantizer.get();
  make_transform(parse_spec("awq(no_clip)"))->apply(ctx, nullptr);
  const Vec s = prev.bias.cwiseInverse();  // bias ones → 1/s
  EXPECT_GT(s.maxCoeff() / s.minCoeff(), 1.5f) << "outlier channels should get larger scales";
  EXPECT_LT((prev.w - Mat(s.cwiseInverse().asDiagonal() * prev0)).norm(), 1e-6 * prev0.norm());
  EXPECT_LT((layer.w - Mat(w0 * s.asDiagonal())).norm(), 1e-6 * layer.w.norm());
  InputStats expect(64);
  expect.add_batch(x * s.cwiseInverse().asDiagonal());
  EXPECT_LT((stats.hessian() - expect.hessian()).norm(), 1e-5 * expect.hessian().norm());
}

TEST(Awq, SkipsFoldingWhenTheProducerDoesNotMatch) {
  Linear layer{synthetic_layer::weights(16, 64, 1), nullptr, Vec(), nullptr};
  Linear prev{synthetic_layer::weights(32, 16, 2), nullptr, Vec(), nullptr};  // GQA: 32 rows feed 64 inputs
  Activations act(64, 8, 0.1f, 2, 25.0f, 3);
  InputStats stats(64);
  stats.add_batch(act.sample(256, 4));
  auto quantizer = make_quantizer(parse_spec("rtn(w4,g32)"));
  const Mat w0 = layer.w, prev0 = prev.w;
  GroupContext ctx{"synthetic", {"synthetic.o_proj"}, {&layer}, nullptr, &prev, &stats, quantizer.get(), {}, 0};
  QuantLog log;
  make_transform(parse_spec("awq(no_clip)"))->apply(ctx, &log);
  EXPECT_EQ(layer.w, w0);
  EXPECT_EQ(prev.w, prev0);
  ASSERT_EQ(log.messages.size(), 1u);
  EXPECT_NE(log.messages[0].find("no scales"), std::string::npos) << log.messages[0];
}

// ---- Determinism ----------------------------------------------------------------------------
TEST(Awq, BitIdenticalAcrossThreadCounts) {
  Layer l = make_layer(300, 384, 31);  // 300 rows: several chunks and a ragged last one
  const int saved = omp_get_max_threads();
  for (QuantGrid g : {QuantGrid{4, 128, false, false}, QuantGrid{3, -1, true, false}}) {
    omp_set_num_threads(1);
    const awq::ScaleSearch a = awq::search_scales({&l.w}, l.calib, g, 20);
    const Mat ca = awq::search_clip(l.w, l.calib, g, 20, 0.5);
    omp_set_num_threads(2);
    const awq::ScaleSearch b = awq::search_scales({&l.w}, l.calib, g, 20);
    const Mat cb = awq::search_clip(l.w, l.calib, g, 20, 0.5);
    EXPECT_EQ(a.errors, b.errors);
    EXPECT_EQ(0, std::memcmp(ca.data(), cb.data(), ca.size() * sizeof(float)));
    // and on rerun
    EXPECT_EQ(a.errors, awq::search_scales({&l.w}, l.calib, g, 20).errors);
  }
  omp_set_num_threads(saved);
}

// ---- Full-precision equivalence on stories260K ----------------------------------------------
// stories260K uses grouped-query attention (8 query heads, 4 kv heads), where v_proj's rows
// cannot carry o_proj's scales. Repeating each kv head gives the same model without GQA, so
// every one of the four folds (both norms, v_proj rows, up_proj rows) is exercised.
void expand_kv_heads(ModelConfig& cfg, std::vector<BlockWeights>& blocks) {
  const int group = cfg.num_heads / cfg.num_kv_heads, hd = cfg.head_dim;
  for (BlockWeights& b : blocks)
    for (Linear* l : {&b.k, &b.v}) {
      Mat w(cfg.num_heads * hd, l->w.cols());
      for (int h = 0; h < cfg.num_heads; ++h) w.middleRows(h * hd, hd) = l->w.middleRows((h / group) * hd, hd);
      l->w = w;
    }
  cfg.num_kv_heads = cfg.num_heads;
}

void apply_awq_to_blocks(const ModelConfig& cfg, const HeadWeights& head, std::vector<BlockWeights>& blocks,
                         const std::vector<int32_t>& ids, const std::string& spec, std::vector<std::string>* log) {
  auto transform = make_transform(parse_spec(spec));
  auto quantizer = make_quantizer(parse_spec("rtn(w4,g32)"));
  RopeTable rope(cfg);
  Mat x = embed_tokens(head, ids);
  for (size_t l = 0; l < blocks.size(); ++l) {
    BlockWeights& w = blocks[l];
    std::vector<InputStats> stats;
    const int widths[] = {cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.hidden_size, cfg.intermediate_size};
    for (int width : widths) stats.emplace_back(width);
    Mat probe = x;
    block_forward(cfg, w, rope, probe, [&](LinearInput g, const Mat& in) { stats[size_t(g)].add_batch(in); });
    for (int g = 0; g < kNumLinearInputs; ++g) {
      GroupContext ctx;
      ctx.input_name = "layer" + std::to_string(l) + " " + linear_input_name(LinearInput(g));
      for (const auto& name : linear_short_names(LinearInput(g))) {
        ctx.names.push_back(name);
        ctx.layers.push_back(w.linear(name));
      }
      ctx.prev_norm = g == 0 ? &w.attn_norm : g == 2 ? &w.ffn_norm : nullptr;
      ctx.prev_linear = g == 1 ? &w.v : g == 3 ? &w.up : nullptr;
      ctx.stats = &stats[size_t(g)];
      ctx.quantizer = quantizer.get();
      QuantLog qlog;
      transform->apply(ctx, &qlog);
      log->insert(log->end(), qlog.messages.begin(), qlog.messages.end());
    }
    block_forward(cfg, w, rope, x);
  }
}

TEST(Awq, FoldedScalesKeepStories260KLogits) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model_path);
  LoadedModel lm = load_model_for_inference(model_path);
  ModelConfig cfg = lm.forward->config();
  std::vector<BlockWeights> blocks;
  for (int l = 0; l < cfg.num_layers; ++l) blocks.push_back(BlockWeights::load(lm.model, l));
  expand_kv_heads(cfg, blocks);
  const HeadWeights head = HeadWeights::load(lm.model);
  std::vector<int32_t> ids{1};
  for (int t = 1; t < 96; ++t) ids.push_back(int32_t((t * 37 + 11) % cfg.vocab_size));
  const Mat reference = lm.forward->logits(ids);
  const Mat expanded = LlamaModel(cfg, head, blocks).logits(ids);
  ASSERT_LT((expanded - reference).cwiseAbs().maxCoeff(), 1e-5 * reference.cwiseAbs().maxCoeff());

  std::vector<std::string> log;
  apply_awq_to_blocks(cfg, head, blocks, ids, "awq(no_clip)", &log);
  ASSERT_EQ(log.size(), size_t(4 * cfg.num_layers));
  int nontrivial = 0;
  for (const auto& m : log) {
    EXPECT_EQ(m.find("no scales"), std::string::npos) << m;
    nontrivial += m.find("alpha=0 ") == std::string::npos;
  }
  EXPECT_GT(nontrivial, 0) << "some group should choose alpha > 0";
  const Mat folded = LlamaModel(cfg, head, blocks).logits(ids);
  const double rel = (folded - reference).cwiseAbs().maxCoeff() / reference.cwiseAbs().maxCoeff();
  EXPECT_LT(rel, 1e-5);
  std::printf("max |logit change| / max |logit| = %.3g\n", rel);
}

// ---- Module objective (llm-awq's): ModuleProbe against block_forward ------------------------
// A deterministic perturbation of every weight of a group's layers.
void perturb(Mat& w, double amount) {
  for (Eigen::Index r = 0; r < w.rows(); ++r)
    for (Eigen::Index c = 0; c < w.cols(); ++c) w(r, c) += float(amount * std::sin(double(r * 31 + c * 7)));
}

// What linear group `g` of `w` reads, and what the last layer of its module reads, for input x.
Mat block_capture(const ModelConfig& cfg, const BlockWeights& w, const RopeTable& rope, const Mat& x, LinearInput g) {
  Mat in, h = x;
  block_forward(cfg, w, rope, h, [&](LinearInput at, const Mat& m) { if (at == g) in = m; }, g);
  return in;
}

TEST(AwqModule, ProbeErrorIsTheModuleOutputErrorOfTheBlock) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model_path);
  LoadedModel lm = load_model_for_inference(model_path);
  const ModelConfig& cfg = lm.forward->config();
  const BlockWeights w = BlockWeights::load(lm.model, 1);
  const HeadWeights head = HeadWeights::load(lm.model);
  const RopeTable rope(cfg);
  std::vector<Mat> windows;
  for (int s = 0; s < 3; ++s) {
    std::vector<int32_t> ids{1};
    for (int t = 1; t < 40 + 9 * s; ++t) ids.push_back(int32_t((t * 37 + 11 * s + 5) % cfg.vocab_size));
    windows.push_back(embed_tokens(head, ids));
  }
  for (LinearInput g : {LinearInput::kQKV, LinearInput::kGateUp}) {
    const LinearInput last = g == LinearInput::kQKV ? LinearInput::kO : LinearInput::kDown;
    const Linear& after = g == LinearInput::kQKV ? w.o : w.down;
    std::vector<Mat> inputs;
    int64_t tokens = 0;
    for (const Mat& x : windows) {
      inputs.push_back(block_capture(cfg, w, rope, x, g));
      tokens += x.rows();
    }
    const ModuleProbe probe(cfg, rope, w, g, inputs);
    EXPECT_EQ(probe.tokens(), tokens);
    BlockWeights p = w;
    std::vector<const Mat*> now, candidate;
    for (const auto& name : linear_short_names(g)) {
      now.push_back(&w.linear(name)->w);
      perturb(p.linear(name)->w, 0.02);
      candidate.push_back(&p.linear(name)->w);
    }
    EXPECT_EQ(probe.error(now), 0.0) << linear_input_name(g);
    double expected = 0;
    for (const Mat& x : windows) {
      const Mat d = after.forward(block_capture(cfg, p, rope, x, last)) - after.forward(block_capture(cfg, w, rope, x, last));
      expected += d.cast<double>().squaredNorm();
    }
    ASSERT_GT(expected, 0);
    EXPECT_NEAR(probe.error(candidate), expected, 1e-5 * expected) << linear_input_name(g);
  }
}

// ---- Through the pipeline --------------------------------------------------------------------
double compressed_ppl(const std::string& recipe, const std::string& model, const std::string& tok,
                      const std::string& data) {
  const std::string out = test::temp_dir("awq_" + std::to_string(std::hash<std::string>()(recipe)));
  auto c = test::run_ptq("compress " + model + " --recipe '" + recipe + "' --calib-data " + data +
                         " --data-format tinystories --samples 32 --seq-len 128 --seed 0 --tokenizer " +
                         tok + " --format fake --quiet --out " + out);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  auto e = test::run_ptq("eval " + out + " --tokenizer " + tok + " --data " + data +
                         " --data-format tinystories --seq-len 512 --max-samples 20 --json --quiet");
  EXPECT_EQ(e.exit_code, 0) << e.err;
  return nlohmann::json::parse(e.out)["ppl"].get<double>();
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Sequential calibration gives the scale search its module objective on q/k/v and gate/up (the
// layer's own objective on o and down), with output bytes independent of the thread count.
TEST(Awq, PipelineModuleObjectiveIsLoggedAndThreadIndependent) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  std::string bytes[2];
  for (int threads : {1, 2}) {
    const std::string out = test::temp_dir("awq_module_t" + std::to_string(threads));
    auto c = test::run_ptq("compress " + model + " --recipe 'awq(tokens=300)+rtn(w4,g32)' --calib-data " + data +
                               " --data-format tinystories --samples 8 --seq-len 64 --seed 0 --tokenizer " + tok +
                               " --format fake --quiet --out " + out + " --report " + out + "-report",
                           "env OMP_NUM_THREADS=" + std::to_string(threads));
    ASSERT_EQ(c.exit_code, 0) << c.err;
    bytes[threads - 1] = file_bytes(out + "/model.safetensors");
    const auto report = nlohmann::json::parse(file_bytes(out + "-report/report.json"));
    int module = 0, full = 0;
    for (const auto& l : report["layers"])
      for (const auto& m : l["log"]) {
        const std::string text = m.get<std::string>();
        module += text.find("module objective") != std::string::npos && text.find("on 320 tokens") != std::string::npos;
        full += text.find("full objective") != std::string::npos;
      }
    EXPECT_EQ(module, 2 * 5) << "q/k/v and gate/up of every block, 5 windows of 64 tokens";
    EXPECT_EQ(full, 5) << "down_proj of every block (o_proj has no scales under GQA)";
  }
  ASSERT_FALSE(bytes[0].empty());
  EXPECT_TRUE(bytes[0] == bytes[1]);
}

TEST(Awq, PipelineRecipeBeatsRtnOnStories260K) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  const double rtn = compressed_ppl("rtn(w3,g32)", model, tok, data);
  const double awq = compressed_ppl("awq+rtn(w3,g32)", model, tok, data);
  std::printf("W3 g32 ppl: rtn %.4f, awq+rtn %.4f\n", rtn, awq);
  EXPECT_LT(awq, 0.95 * rtn);
}

}  // namespace
}  // namespace ptq
