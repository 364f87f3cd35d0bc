// GGUF export (formats/gguf_format.cpp) end to end through the built binary on pydoc4M: every
// 32-block type written from GPTQ/RTN grids fitted for it reads back (through ptq's GGUF reader,
// whose dequantizers are bit-identical to gguf-py's, tests/test_gguf_numpy.cpp) as exactly the
// quantized layers' effective weights, q/k permutation included; refusals come before any work.
// llama.cpp itself runs on these files in scripts/verify_llama_cpp.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "formats/checkpoint_writer.h"
#include "formats/gguf_file.h"
#include "ptq/linear.h"
#include "ptq/model.h"
#include "ptq/pipeline.h"
#include "ptq/stages.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

using test::run_ptq;

struct Pydoc {
  std::string model, calib, eval;
};

#define PYDOC(var)                                                  \
  PTQ_REQUIRE_SHARED("models/pydoc4M", var##_model);                \
  PTQ_REQUIRE_SHARED("data/pydoc/calib.txt", var##_calib);          \
  PTQ_REQUIRE_SHARED("data/pydoc/eval.txt", var##_eval);            \
  const Pydoc var{var##_model, var##_calib, var##_eval}

test::CliResult compress(const Pydoc& p, const std::string& recipe, const std::string& format, const std::string& out,
                         const std::string& windows = "--samples 16 --seq-len 128") {
  return run_ptq("compress " + p.model + " --recipe '" + recipe + "' --calib-data " + p.calib + " --data-format text " +
                 windows + " --quiet --format '" + format + "' --out " + out);
}

bool bit_equal(const Mat& a, const Mat& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * size_t(a.size())) == 0;
}

// What the exported weights must equal: RTN run here on the source weights with the format's
// constraints (fp16 statistics; additive offsets for the _1 types, signed-extreme scales for the
// others), the norms and embedding as the source holds them.
std::map<std::string, Mat> reference_weights(const Pydoc& p, const std::string& recipe, const std::string& format) {
  const Model source = Model::open(p.model);
  std::map<std::string, Mat> out;
  for (const auto& [name, shape] : source.required_tensors()) out[name] = source.weight(name);
  const auto q = make_quantizer(parse_spec(recipe), format_traits(format).constraints);
  for (const auto& layer : linear_layer_names(source.config()))
    out[layer + ".weight"] = q->quantize(source.weight(layer + ".weight"), nullptr, nullptr).effective_weight();
  return out;
}

std::string upper(std::string s) {
  for (char& ch : s) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

struct Case {
  const char* recipe;
  const char* type;
};

class GgufExport : public ::testing::TestWithParam<Case> {};

TEST_P(GgufExport, ReadsBackAsTheQuantizedWeights) {
  PYDOC(p);
  const Case c = GetParam();
  const std::string dir = test::temp_dir(std::string("gguf_export_") + c.type);
  const std::string format = std::string("gguf(") + c.type + ")";
  auto r = compress(p, c.recipe, format, dir + "/gguf");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::map<std::string, Mat> ref = reference_weights(p, c.recipe, format);

  const std::string file = dir + "/gguf/model.gguf";
  GgufFile g(file);
  EXPECT_EQ(g.required_string("general.architecture"), "llama");
  EXPECT_EQ(g.required_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(g.required_string("ptq.recipe"), c.recipe);
  EXPECT_TRUE(nlohmann::json::parse(g.required_string("ptq.calibration")).is_object());
  EXPECT_STREQ(ggml_type_name(g.find_tensor("blk.0.attn_q.weight")->type), upper(c.type).c_str());
  EXPECT_STREQ(ggml_type_name(g.find_tensor("blk.3.ffn_down.weight")->type), upper(c.type).c_str());
  EXPECT_EQ(g.find_tensor("output_norm.weight")->type, GgmlType::F32);
  EXPECT_EQ(g.find_tensor("token_embd.weight")->type, GgmlType::F32);  // the source's dtype

  const Model exported = Model::open(file);  // undoes the q/k permutation
  ModelConfig want = Model::open(p.model).config(), got = exported.config();
  EXPECT_EQ(got.rms_norm_eps, double(float(want.rms_norm_eps)));  // GGUF stores it as f32
  got.rms_norm_eps = want.rms_norm_eps;
  EXPECT_EQ(got.to_json().dump(), want.to_json().dump());
  for (const auto& [name, want] : ref) EXPECT_TRUE(bit_equal(exported.weight(name), want)) << c.type << " " << name;
}

INSTANTIATE_TEST_SUITE_P(Types, GgufExport,
                         ::testing::Values(Case{"rtn(w8,g32,sym)", "q8_0"}, Case{"rtn(w4,g32,sym)", "q4_0"},
                                           Case{"rtn(w4,g64)", "q4_1"}, Case{"rtn(w5,g128,sym,mse)", "q5_0"},
                                           Case{"rtn(w5,g32)", "q5_1"}, Case{"rtn(w2,g16)", "q2_k"},
                                           Case{"rtn(w3,g16,sym)", "q3_k"}, Case{"rtn(w4,g32,mse)", "q4_k"},
                                           Case{"rtn(w5,g32)", "q5_k"}, Case{"rtn(w6,g16,sym)", "q6_k"}),
                         [](const auto& info) { return std::string(info.param.type); });

double eval_ppl(const Pydoc& p, const std::string& file) {
  auto r = run_ptq("eval " + file + " --tokenizer " + p.model + "/tokenizer.model --data " + p.eval +
                   " --data-format text --seq-len 256 --max-samples 40 --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out)["ppl"].get<double>() : NAN;
}

// GPTQ's error feedback on the formats' grids works (the additive Q4_1 grid, Q4_0's signed-extreme
// one, the K-quant super-blocks of Q4_K and Q3_K): it beats RTN on each (with 128 windows of 256; 16 of 128 are too few for GPTQ on this
// model, with any grid). The codes themselves are pinned by tests/test_gptq.cpp's textbook.
TEST(GgufExportGptq, BeatsRtnOnTheFormatsGrids) {
  PYDOC(p);
  const std::string dir = test::temp_dir("gguf_export_gptq");
  for (const auto& [grid, type] : {std::pair{"w4,g64", "q4_1"}, std::pair{"w4,g32,sym", "q4_0"},
                                   std::pair{"w4,g32", "q4_k"}, std::pair{"w3,g16,sym", "q3_k"}}) {
    double ppl[2];
    for (int m = 0; m < 2; ++m) {
      const std::string method = m ? "gptq" : "rtn", out = dir + "/" + type + "_" + method;
      auto r = compress(p, method + "(" + grid + ")", std::string("gguf(") + type + ")", out, "--samples 128 --seq-len 256");
      ASSERT_EQ(r.exit_code, 0) << r.err;
      ppl[m] = eval_ppl(p, out + "/model.gguf");
      RecordProperty(std::string(type) + "_" + method, std::to_string(ppl[m]));
    }
    EXPECT_LT(ppl[1], ppl[0]) << type;
    EXPECT_LT(ppl[0], 1.1 * 25.886) << type;  // fp on these 40 windows: 25.886
  }
}

// The preset mixtures as llama.cpp's llama_tensor_get_type gives them to a 4-layer llama (n/8 = 0,
// so use_more_bits holds for layers 2 and 3): Q4_K_M puts attn_v and ffn_down of those layers on
// Q6_K; Q3_K_M puts attn_v of layers 0-1 and no ffn_down (n/16 = 0) on Q5_K, the other attn_v,
// every ffn_down and attn_output on Q4_K. Every layer reads back as RTN on its type's grid.
TEST(GgufExportMixtures, Q4KMAndQ3KMAsLlamaCppAssignsThem) {
  PYDOC(p);
  const std::string dir = test::temp_dir("gguf_export_mix");
  struct Mix {
    const char* recipe;
    const char* format;
    std::map<std::string, std::string> types;  // "blk.L.name" -> type; unlisted: the main type
    const char* main;
  };
  const std::vector<Mix> mixes = {
      {"rtn(w4,g32)", "gguf(q4_k_m)",
       {{"blk.2.attn_v", "Q6_K"}, {"blk.3.attn_v", "Q6_K"}, {"blk.2.ffn_down", "Q6_K"}, {"blk.3.ffn_down", "Q6_K"}},
       "Q4_K"},
      {"rtn(w3,g16,sym)", "gguf(q3_k_m)",
       {{"blk.0.attn_v", "Q5_K"}, {"blk.1.attn_v", "Q5_K"}, {"blk.2.attn_v", "Q4_K"}, {"blk.3.attn_v", "Q4_K"},
        {"blk.0.ffn_down", "Q4_K"}, {"blk.1.ffn_down", "Q4_K"}, {"blk.2.ffn_down", "Q4_K"}, {"blk.3.ffn_down", "Q4_K"},
        {"blk.0.attn_output", "Q4_K"}, {"blk.1.attn_output", "Q4_K"}, {"blk.2.attn_output", "Q4_K"},
        {"blk.3.attn_output", "Q4_K"}},
       "Q3_K"},
  };
  const std::map<std::string, std::string> grid_of = {{"Q3_K", "rtn(w3,g16,sym)"}, {"Q4_K", "rtn(w4,g32)"},
                                                      {"Q5_K", "rtn(w5,g32)"}, {"Q6_K", "rtn(w6,g16,sym)"}};
  const std::map<std::string, std::string> hf = {{"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
                                                 {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"},
                                                 {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
                                                 {"ffn_down", "mlp.down_proj"}};
  const Model source = Model::open(p.model);
  for (const Mix& m : mixes) {
    const std::string out = dir + "/" + std::string(m.format).substr(5, std::strlen(m.format) - 6);
    auto r = compress(p, m.recipe, m.format, out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    GgufFile g(out + "/model.gguf");
    const Model exported = Model::open(out + "/model.gguf");
    const GridConstraints& k = format_traits(m.format).constraints;
    for (int layer = 0; layer < 4; ++layer)
      for (const auto& [tensor, module] : hf) {
        const std::string key = "blk." + std::to_string(layer) + "." + tensor;
        const std::string type = m.types.count(key) ? m.types.at(key) : m.main;
        EXPECT_STREQ(ggml_type_name(g.find_tensor(key + ".weight")->type), type.c_str()) << m.format << " " << key;
        const std::string weight = "model.layers." + std::to_string(layer) + "." + module + ".weight";
        const Mat want =
            make_quantizer(parse_spec(grid_of.at(type)), k)->quantize(source.weight(weight), nullptr, nullptr).effective_weight();
        EXPECT_TRUE(bit_equal(exported.weight(weight), want)) << m.format << " " << weight;
      }
  }
}

// A K type on a width that is not a multiple of 256 takes the 32-block fallback llama.cpp takes
// (Q4_K → Q5_0, Q6_K → Q8_0; Q5_K → Q5_0 and Q2_K/Q3_K → Q4_0 where llama.cpp's fallback is a
// grid ptq does not fit); widths that are multiples of 256, and 32-block files, are left alone.
TEST(GgufExportMixtures, FallbacksForNarrowLayers) {
  ModelConfig c;
  c.num_layers = 30;
  struct Case {
    const char* format;
    const char* spec;
    int cols;
    int bits, group;  // of the override; 0: none
    bool sets_sym;
  };
  for (Case t : {Case{"gguf(q4_k)", "rtn(w4,g32)", 576, 5, 32, true}, Case{"gguf(q6_k)", "rtn(w6,g16,sym)", 576, 8, 32, false},
                 Case{"gguf(q5_k)", "rtn(w5,g32)", 576, 5, 32, true}, Case{"gguf(q3_k)", "rtn(w3,g16,sym)", 96, 4, 32, false},
                 Case{"gguf(q2_k)", "rtn(w2,g16)", 64, 4, 32, true}, Case{"gguf(q4_k)", "rtn(w4,g32)", 1536, 0, 0, false},
                 Case{"gguf(q4_0)", "rtn(w4,g32,sym)", 576, 0, 0, false}}) {
    const FormatTraits& f = format_traits(t.format);
    ASSERT_NE(f.layer_override, nullptr);
    const auto q = make_quantizer(parse_spec(t.spec), f.constraints);
    const auto o = f.layer_override("model.layers.10.mlp.up_proj", c, 1536, t.cols, q->grid());
    ASSERT_EQ(o.has_value(), t.bits != 0) << t.format << " " << t.cols;
    if (!o) continue;
    EXPECT_EQ(o->override.bits, t.bits) << t.format;
    EXPECT_EQ(o->override.group_size, t.group) << t.format;
    EXPECT_EQ(!o->override.args.empty() && o->override.args[0].key == "sym", t.sets_sym) << t.format;
    EXPECT_NE(o->why.find("super-blocks of 256 input columns"), std::string::npos) << o->why;
  }
  // Q3_K_M from a symmetric grid to Q5_K removes the sym flag.
  const FormatTraits& f = format_traits("gguf(q3_k_m)");
  const auto q = make_quantizer(parse_spec("rtn(w3,g16,sym)"), f.constraints);
  const auto o = f.layer_override("model.layers.1.self_attn.v_proj", c, 192, 256, q->grid());
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->override.bits, 5);
  EXPECT_EQ(o->override.group_size, 32);
  EXPECT_EQ(o->override.unset, std::vector<std::string>{"sym"});
}

// ggml's q8_0 activations (quantize_row_q8_0_ref): per 32 values d = amax/127, codes round(x/d)
// from the fp32 d, values with d rounded to fp16; the largest magnitude lands on ±127.
TEST(LlamaCppActivations, EightBitBlocksAsGgmlQuantizesThem) {
  Mat x(2, 64);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = std::sin(0.37f * float(i)) * (1.0f + float(i % 7));
  x(1, 40) = 0.0f;
  for (int c = 32; c < 64; ++c) x(0, c) = 0.0f;  // an all-zero block stays zero
  Mat y = x;
  round_inputs(y, InputRounding::kBlocks8);
  for (int r = 0; r < 2; ++r)
    for (int b = 0; b < 2; ++b) {
      const auto in = x.row(r).segment(32 * b, 32), out = y.row(r).segment(32 * b, 32);
      const float amax = in.cwiseAbs().maxCoeff(), d = amax / 127.0f;
      const float stored = f16_to_f32(f32_to_f16(d));
      for (int j = 0; j < 32; ++j) {
        const float q = d != 0 ? std::round(in[j] * (1.0f / d)) : 0.0f;
        EXPECT_EQ(out[j], stored * q);
        EXPECT_LE(std::fabs(q), 127.0f);
      }
      if (amax > 0) {
        EXPECT_EQ(out.cwiseAbs().maxCoeff(), stored * 127.0f);
      }
    }
  Mat h = x;
  round_inputs(h, InputRounding::kF16);
  EXPECT_EQ(h(0, 3), f16_to_f32(f32_to_f16(x(0, 3))));
}

// ggml's q8_K activations (quantize_row_q8_K_ref, the K types' vec_dot_type): per 256 values
// iscale = −127/m for m the first value of largest magnitude, codes min(127, rint(iscale·x)),
// values codes/iscale in fp32; an all-zero block stays zero.
TEST(LlamaCppActivations, SuperBlocksAsGgmlQuantizesThem) {
  Mat x(1, 512);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = std::cos(0.23f * float(i)) * (1.0f + float(i % 5));
  x.block(0, 256, 1, 256).setZero();
  Mat y = x;
  round_inputs(y, InputRounding::kBlocks8K);
  float m = 0;
  for (int j = 0; j < 256; ++j)
    if (std::fabs(x(0, j)) > std::fabs(m)) m = x(0, j);
  const float iscale = -127.0f / m, d = 1.0f / iscale;
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y(0, j), d * std::min(127.0f, std::nearbyint(iscale * x(0, j)))) << j;
  for (int j = 256; j < 512; ++j) EXPECT_EQ(y(0, j), 0.0f);
}

TEST(GgufExportRefusals, BeforeAnyWork) {
  PYDOC(p);
  const std::string dir = test::temp_dir("gguf_export_refusals");
  struct Refusal {
    const char* recipe;
    const char* format;
    const char* message;
  };
  for (Refusal c : {Refusal{"gptq(w4,g32)", "gguf(q4_0)", "gguf(q4_0) decodes symmetric 4-bit groups"},
                    Refusal{"gptq(w4,g32,sym)", "gguf(q4_1)", "gguf(q4_1) decodes asymmetric 4-bit groups"},
                    Refusal{"rtn(w4,g16,sym)", "gguf(q4_0)", "groups must be a multiple of 32"},
                    Refusal{"rtn(w3,g32,sym)", "gguf(q4_0)", "quantize with w4,sym"},
                    Refusal{"quantease(w4,g32)", "gguf(q4_1)", "quantease fits zero-point grids only"},
                    Refusal{"rtn(w4,g64)", "gguf(q4_k)", "gguf(q4_k) decodes asymmetric 4-bit groups; quantize with w4,g32"},
                    Refusal{"rtn(w3,g32,sym)", "gguf(q3_k)", "Q3_K (w3,sym,g16)"},
                    Refusal{"gptq(w4,g32,act_order)", "gguf(q4_k)", "do not take act_order"},
                    Refusal{"quantease(w3,g16,sym)", "gguf(q3_k)", "super-block"}}) {
    auto r = compress(p, c.recipe, c.format, dir + "/out");
    EXPECT_NE(r.exit_code, 0) << c.recipe << " " << c.format;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
  // act_order's scattered groups are refused when the layer reaches the writer.
  auto r = compress(p, "gptq(w4,g32,sym,act_order)", "gguf(q4_0)", dir + "/act");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("act-order groups (g_idx) cannot be stored"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ptq
