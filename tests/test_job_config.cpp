// YAML job files: the recipe's two forms, and schema errors that quote file, line and column.
#include <gtest/gtest.h>

#include <fstream>

#include "formats/checkpoint_writer.h"
#include "ptq/error.h"
#include "ptq/pipeline.h"
#include "cli/jobs/job_config.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

std::string job_text(const std::string& model, const std::string& recipe_block, const std::string& extra = "",
                     const std::string& format = "fake") {
  return "model:\n  path: " + model + "\n" + recipe_block + "output:\n  dir: /tmp/unused\n  format: " + format +
         "\n" + extra;
}

// The message of the Error parse_job_yaml throws ("" when it does not throw).
std::string error_of(const std::string& text) {
  try {
    parse_job_yaml(text, "bad.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JobConfig, ListAndStringRecipesAreTheSame) {
  auto list = recipe_from_yaml_text("- gptq: {act_order: true, group_size: 128, bits: 4}\n");
  auto text = recipe_from_yaml_text("\"gptq(w4,g128,act_order)\"");
  EXPECT_EQ(list, text);
  EXPECT_EQ(recipe_to_string(list), "gptq(w4,g128,act_order)");
  EXPECT_EQ(recipe_to_string(list), recipe_to_string(text));
  auto flags = recipe_from_yaml_text("- rtn: {bits: 3, group_size: 32, sym: true, mse: false}\n");
  EXPECT_EQ(recipe_to_string(flags), "rtn(w3,g32,sym)");
  auto refined = recipe_from_yaml_text("- gptq: {bits: 3, group_size: 128}\n- lorc: {r: 8, hessian: true}\n");
  EXPECT_EQ(recipe_to_string(refined), "gptq(w3,g128)+lorc(r8,hessian)");
  EXPECT_EQ(make_refiner(refined[1])->spec(), "lorc(r8,hessian)");
  auto rotated = recipe_from_yaml_text("- rot: {hadamard: true, online: true, seed: 3}\n- gptq: {bits: 4, group_size: 64}\n");
  EXPECT_EQ(make_transform(rotated[0])->spec(), "rot(hadamard,seed=3,online)");
}

TEST(JobConfig, SpqrStageAndOverrideArgs) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  JobSpec job = parse_job_yaml(
      job_text(model, "recipe:\n  - spqr: {bits: 3, group_size: 16, qq: 3, qg: 16, outlier: 0.2, perm: act_order}\n",
               "calibration:\n  data: d.txt\n  format: tinystories\n  samples: 16\n  seq_len: 128\n"
               "overrides:\n  - match: 'down_proj'\n    args: {outlier: 0.5, gptq_fit: true, block: 64}\n"),
      "job.yaml");
  EXPECT_EQ(recipe_to_string(job.compress.pipeline.recipe), "spqr(w3,g16,qq=3,qg=16,outlier=0.2,perm=act_order)");
  ASSERT_EQ(job.compress.pipeline.overrides.size(), 1u);
  const std::vector<SpecArg> expected = {{"outlier", "0.5"}, {"gptq_fit", ""}, {"block", "64"}};
  EXPECT_EQ(job.compress.pipeline.overrides[0].args, expected);
  EXPECT_THROW(parse_job_yaml(job_text(model, "recipe: spqr\n",
                                       "calibration:\n  data: d.txt\n  samples: 16\n  seq_len: 128\n"
                                       "overrides:\n  - match: 'down_proj'\n    args: [1, 2]\n"),
                              "job.yaml"),
               Error);
}

// An override arg `false` removes a bare flag from the matching layers' spec (a symmetric recipe
// with asymmetric layers, as llama.cpp's Q3_K_M mixture needs).
TEST(JobConfig, OverrideFalseRemovesAFlag) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  JobSpec job = parse_job_yaml(
      job_text(model, "recipe: \"rtn(w3,g16,sym)\"\n",
               "overrides:\n  - match: 'v_proj'\n    bits: 5\n    group_size: 32\n    args: {sym: false}\n"),
      "job.yaml");
  ASSERT_EQ(job.compress.pipeline.overrides.size(), 1u);
  EXPECT_TRUE(job.compress.pipeline.overrides[0].args.empty());
  EXPECT_EQ(job.compress.pipeline.overrides[0].unset, std::vector<std::string>{"sym"});
  EXPECT_EQ(layer_quantizer_spec("model.layers.0.self_attn.v_proj", job.compress.pipeline)->to_string(), "rtn(w5,g32)");
  EXPECT_EQ(layer_quantizer_spec("model.layers.0.self_attn.q_proj", job.compress.pipeline)->to_string(),
            "rtn(w3,g16,sym)");
}

// libstdc++'s regex compiler overflows a signed long on huge repeat counts and back-reference
// numbers (found by the job_yaml fuzz harness): such patterns are refused before it sees them.
TEST(JobConfig, RefusesOverridePatternsTheRegexEngineCannotTake) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  for (const std::string& pattern : std::vector<std::string>{"'layers\\\\99999999999999999999.4'", "'a{1000000}'", "'" + std::string(600, 'a') + "'"}) {
    try {
      parse_job_yaml(job_text(model, "recipe: rtn\n", "overrides:\n  - match: " + pattern + "\n    skip: true\n"),
                     "job.yaml");
      ADD_FAILURE() << pattern << " was accepted";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.find("digits") != std::string::npos || what.find("longer than") != std::string::npos) << what;
      EXPECT_NE(what.find("job.yaml"), std::string::npos) << what;
    }
  }
  EXPECT_NO_THROW(parse_job_yaml(job_text(model, "recipe: rtn\n", "overrides:\n  - match: 'layers\\\\.1[0-9]{1,2}\\\\.'\n    skip: true\n"),
                                 "job.yaml"));
}

TEST(JobConfig, ParsesAFullJob) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  JobSpec job = parse_job_yaml(job_text(model, "recipe:\n  - gptq: {bits: 4, group_size: 32}\n",
                                        "calibration:\n  data: d.txt\n  format: tinystories\n  samples: 16\n"
                                        "  seq_len: 128\n  seed: 7\n"
                                        "overrides:\n  - match: 'down_proj'\n    bits: 8\n  - match: 'layers\\.0\\.'\n"
                                        "    skip: true\n"
                                        "eval:\n  - path: e.txt\n    protocol: wikitext2\n    seq_len: 64\n"
                                        "report:\n  dir: rep\nthreads: 2\n"),
                               "job.yaml");
  EXPECT_EQ(recipe_to_string(job.compress.pipeline.recipe), "gptq(w4,g32)");
  EXPECT_TRUE(job.compress.has_calib_request);
  EXPECT_EQ(job.compress.calib_request.samples, 16);
  EXPECT_EQ(job.compress.calib_request.seed, 7u);
  EXPECT_EQ(job.compress.calib_request.format, DataFormat::kTinyStories);
  ASSERT_EQ(job.compress.pipeline.overrides.size(), 2u);
  EXPECT_EQ(*job.compress.pipeline.overrides[0].bits, 8);
  EXPECT_TRUE(job.compress.pipeline.overrides[1].skip);
  EXPECT_TRUE(job.compress.pipeline.overrides[0].args.empty());
  ASSERT_EQ(job.evals.size(), 1u);
  EXPECT_EQ(job.evals[0].format, DataFormat::kWikiText2);
  EXPECT_EQ(job.report_dir, "rep");
  EXPECT_EQ(job.threads, 2);
}

TEST(JobConfig, UnknownKeyQuotesLineAndColumn) {
  std::string msg = error_of("model:\n  path: m\n  tokeniser: t\nrecipe: rtn\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:3:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'tokeniser'"), std::string::npos) << msg;
  msg = error_of("model: {path: m}\nrecipe: rtn\noutput: {dir: o}\nevals: []\n");
  EXPECT_NE(msg.find("bad.yaml:4:1:"), std::string::npos) << msg;
}

TEST(JobConfig, WrongTypesQuoteLineAndColumn) {
  std::string msg = error_of(
      "model: {path: m}\nrecipe: \"gptq(w4)\"\ncalibration:\n  data: d.txt\n  samples: many\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:5:12:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
  msg = error_of("model: [m]\nrecipe: rtn\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:1:8:"), std::string::npos) << msg;
  msg = error_of("model: {path: m}\nrecipe: rtn\noutput: {dir: o}\nthreads: two\n");
  EXPECT_NE(msg.find("bad.yaml:4:10:"), std::string::npos) << msg;
}

TEST(JobConfig, UnknownAlgorithmAndBadSpecQuoteTheStage) {
  std::string msg = error_of("model: {path: m}\nrecipe:\n  - frobnicate: {bits: 4}\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:3:5:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("frobnicate"), std::string::npos) << msg;
  msg = error_of("model: {path: m}\nrecipe: \"gptq(w4,,)\"\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:2:9:"), std::string::npos) << msg;
}

TEST(JobConfig, ImpossibleCombinations) {
  std::string msg = error_of(
      "model: {path: m}\nrecipe: rtn\ncalibration:\n  data: d\n  activations: a.h5\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:5:16:"), std::string::npos) << msg;
  msg = error_of("model: {path: m}\nrecipe: rtn\ncalibration:\n  data: d\n  mode: independent\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:5:9:"), std::string::npos) << msg;
  msg = error_of("model: {path: m}\nrecipe: \"gptq(w4)\"\noutput: {dir: o}\n");
  EXPECT_NE(msg.find("bad.yaml:2:9:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs calibration"), std::string::npos) << msg;
  msg = error_of("model: {path: m}\nrecipe: rtn\noutput: {dir: o, format: nosuch}\n");
  EXPECT_NE(msg.find("bad.yaml:3:26:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown output format"), std::string::npos) << msg;
  msg = error_of("model: {path: m}\nrecipe: rtn\noutput:\n  dir: o\n  : [\n");
  EXPECT_NE(msg.find("bad.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;
}

TEST(JobConfig, TheFormatIsAskedAboutEveryLayer) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  // The awq format packs only 4-bit codes: a 3-bit recipe is blamed at the quantizer stage.
  std::string msg = error_of(job_text(model, "recipe:\n  - rtn: {bits: 3, group_size: 32}\n", "", "awq"));
  EXPECT_NE(msg.find("bad.yaml:4:5:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("only 4-bit"), std::string::npos) << msg;
  // An override that gives every layer 4 bits makes the job valid; one that asks q_proj for 3
  // bits is blamed.
  std::string fix = "overrides:\n  - match: proj\n    bits: 4\n";
  EXPECT_EQ(error_of(job_text(model, "recipe:\n  - rtn: {bits: 3, group_size: 32}\n", fix, "awq")), "");
  msg = error_of(job_text(model, "recipe:\n  - rtn: {bits: 3, group_size: 32}\n",
                          fix + "  - match: q_proj\n    bits: 3\n", "awq"));
  EXPECT_NE(msg.find("bad.yaml:11:5:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("q_proj"), std::string::npos) << msg;
  EXPECT_NE(msg.find("only 4-bit"), std::string::npos) << msg;
  // A model path that does not open is quoted too.
  msg = error_of(job_text("/nonexistent/model", "recipe: rtn\n"));
  EXPECT_NE(msg.find("bad.yaml:2:9:"), std::string::npos) << msg;
}

TEST(JobConfig, CliQuotesTheFileAndPrintsTheSchema) {
  std::string dir = test::temp_dir("job_config_cli");
  std::ofstream(dir + "/bad.yaml") << "model: {path: m}\nrecipe: rtn\noutput: {dir: o}\ncalibraton: {}\n";
  auto r = test::run_ptq("run " + dir + "/bad.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir + "/bad.yaml:4:1: unknown key 'calibraton'"), std::string::npos) << r.err;
  auto s = test::run_ptq("run --print-schema");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  for (const char* key : {"model:", "calibration:", "recipe:", "overrides:", "output:", "eval:", "report:", "threads:"})
    EXPECT_NE(s.out.find(key), std::string::npos) << key;
  auto h = test::run_ptq("compress --help");
  ASSERT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("--log-json"), std::string::npos);
  EXPECT_NE(h.out.find("fake"), std::string::npos);  // the registered formats are listed
}

}  // namespace
}  // namespace ptq
