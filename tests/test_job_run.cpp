// `ptq run` end to end on stories260K: byte-identical reruns, 1 vs 2 threads, reports, compress
// sharing the code path.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/file_hashes.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ptq {
namespace {

using test::file_hashes;

struct Paths {
  std::string model, tok, data;
};

// A small GPTQ job (16 windows of 128 tokens) writing into `dir`.
std::string write_job(const Paths& p, const std::string& dir, int threads, const std::string& recipe = "gptq(w4,g32,act_order)") {
  std::string path = dir + "/job.yaml";
  std::ofstream(path) << "model:\n  path: " << p.model << "\n  tokenizer: " << p.tok << "\n"
                      << "calibration:\n  data: " << p.data << "\n  format: tinystories\n  samples: 16\n"
                      << "  seq_len: 128\n  seed: 3\n"
                      << "recipe: \"" << recipe << "\"\n"
                      << "output:\n  dir: " << dir << "/out\n  format: fake\n"
                      << "eval:\n  - path: " << p.data << "\n    format: tinystories\n    seq_len: 128\n"
                      << "    max_samples: 8\n"
                      << "report:\n  dir: " << dir << "/report\n"
                      << "threads: " << threads << "\n";
  return path;
}

json report_without_times(const std::string& dir) {
  std::ifstream in(dir + "/report/report.json");
  json j = json::parse(in);
  j.erase("times");
  j["environment"].erase("threads");
  return j;
}

#define REQUIRE_STORIES(p)                                                  \
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model_);                      \
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok_);                \
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data_);         \
  const Paths p{model_, tok_, data_}

TEST(JobRun, RerunAndThreadCountGiveIdenticalBytesAndNumbers) {
  REQUIRE_STORIES(p);
  std::string a = test::temp_dir("job_run_a"), b = test::temp_dir("job_run_b"), c = test::temp_dir("job_run_c");
  auto ra = test::run_ptq("run " + write_job(p, a, 1) + " --quiet");
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  auto rb = test::run_ptq("run " + write_job(p, b, 1) + " --quiet");
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  auto rc = test::run_ptq("run " + write_job(p, c, 2) + " --quiet");
  ASSERT_EQ(rc.exit_code, 0) << rc.err;
  EXPECT_EQ(ra.err, "");  // --quiet
  auto ha = file_hashes(a + "/out");
  ASSERT_TRUE(ha.count("model.safetensors"));
  EXPECT_EQ(ha, file_hashes(b + "/out"));
  EXPECT_EQ(ha, file_hashes(c + "/out"));
  // The reports differ only in times, thread count and the paths that name each directory.
  json ja = report_without_times(a), jb = report_without_times(b), jc = report_without_times(c);
  for (json* j : {&ja, &jb, &jc}) {
    (*j)["output"].erase("dir");
    (*j).erase("job");
  }
  EXPECT_EQ(ja, jb);
  EXPECT_EQ(ja, jc);
  EXPECT_EQ(ja["environment"]["ptq_version"].get<std::string>().empty(), false);
  // The stdout table is the ppl table.
  EXPECT_NE(ra.out.find("fp ppl"), std::string::npos) << ra.out;
  auto table = [](const std::string& out) { return out.substr(0, out.find("report: ")); };
  EXPECT_EQ(table(ra.out), table(rb.out));
  EXPECT_EQ(table(ra.out), table(rc.out));
  // No staging or lock left behind.
  EXPECT_FALSE(fs::exists(a + "/out.partial"));
  EXPECT_FALSE(fs::exists(a + "/out.partial.lock"));
  EXPECT_FALSE(fs::exists(a + "/out/resume"));
}

TEST(JobRun, ReportHoldsTheRequiredSections) {
  REQUIRE_STORIES(p);
  std::string d = test::temp_dir("job_run_report");
  auto r = test::run_ptq("run " + write_job(p, d, 0) + " --log-json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // --log-json: every stderr line is a JSON progress object.
  std::istringstream lines(r.err);
  std::string line;
  int progress_lines = 0;
  while (std::getline(lines, line)) {
    json j = json::parse(line);
    EXPECT_TRUE(j.contains("stage") && j.contains("done") && j.contains("total") && j.contains("elapsed")) << line;
    ++progress_lines;
  }
  EXPECT_GT(progress_lines, 5);
  std::ifstream in(d + "/report/report.json");
  json j = json::parse(in);
  EXPECT_EQ(j["recipe"], "gptq(w4,g32,act_order)");
  EXPECT_EQ(j["seed"], 3);
  EXPECT_EQ(j["layers"].size(), 35u);  // 5 blocks x 7 linear layers
  ASSERT_EQ(j["eval"].size(), 1u);
  double fp = j["eval"][0]["fp"]["ppl"], q = j["eval"][0]["quantized"]["ppl"];
  EXPECT_GT(fp, 1.0);
  EXPECT_GT(q, fp * 0.98);  // W4 may not beat fp by more than noise
  EXPECT_LT(q, fp * 1.5);
  EXPECT_EQ(j["model"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(j["calibration"]["data_sha256"].get<std::string>().size(), 64u);
  // Exact storage: 4-bit codes, an fp16 scale and a 4-bit zero per 32 weights (4.625), plus the
  // act-order g_idx (32 bits per input column, 32/N per weight: at most 0.5 for N = 64).
  EXPECT_GE(j["output"]["bits_per_weight"].get<double>(), 4.625);
  EXPECT_LE(j["output"]["bits_per_weight"].get<double>(), 4.625 + 0.5);
  EXPECT_GT(j["output"]["bytes"].get<uint64_t>(), 0u);
  for (const char* k : {"ptq_version", "ptq_commit", "compiler", "cpu_model", "cpu_flags", "threads", "openmp_wait"})
    EXPECT_TRUE(j["environment"].contains(k)) << k;
  std::vector<std::string> stages;
  for (const auto& t : j["times"]) stages.push_back(t["stage"]);
  EXPECT_EQ(stages.front(), "calibration");
  EXPECT_NE(std::find(stages.begin(), stages.end(), "quantize"), stages.end());
  EXPECT_TRUE(fs::exists(d + "/report/report.md"));
  EXPECT_TRUE(fs::exists(d + "/report/report.html"));

  // compare: a side-by-side table naming both reports, marking rows that differ.
  std::string e = test::temp_dir("job_run_report_w3");
  ASSERT_EQ(test::run_ptq("run " + write_job(p, e, 0, "rtn(w3,g32)") + " --quiet").exit_code, 0);
  auto cmp = test::run_ptq("report compare " + d + "/report/report.json " + e + "/report/report.json");
  ASSERT_EQ(cmp.exit_code, 0) << cmp.err;
  EXPECT_NE(cmp.out.find("gptq(w4,g32,act_order)"), std::string::npos) << cmp.out;
  EXPECT_NE(cmp.out.find("rtn(w3,g32)"), std::string::npos) << cmp.out;
  EXPECT_NE(cmp.out.find("quant ppl"), std::string::npos) << cmp.out;
}

// ptq bounds libgomp's spin unless the user chose a wait policy (cli/main.cpp), and the report says
// which applied; either way the output bytes are the same.
TEST(JobRun, OpenMpWaitIsBoundedUnlessTheUserChose) {
  REQUIRE_STORIES(p);
  std::string a = test::temp_dir("job_run_omp_a"), b = test::temp_dir("job_run_omp_b");
  auto ra = test::run_ptq("run " + write_job(p, a, 2, "rtn(w4,g32)") + " --quiet", "env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY");
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  auto rb = test::run_ptq("run " + write_job(p, b, 2, "rtn(w4,g32)") + " --quiet", "env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive");
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  auto wait = [](const std::string& d) {
    std::ifstream in(d + "/report/report.json");
    return json::parse(in)["environment"]["openmp_wait"].get<std::string>();
  };
  EXPECT_EQ(wait(a), "GOMP_SPINCOUNT=10000");
  EXPECT_EQ(wait(b), "OMP_WAIT_POLICY=passive");
  EXPECT_EQ(file_hashes(a + "/out"), file_hashes(b + "/out"));
}

TEST(JobRun, CompressIsTheSameCodePath) {
  REQUIRE_STORIES(p);
  std::string a = test::temp_dir("job_run_same_a"), b = test::temp_dir("job_run_same_b");
  ASSERT_EQ(test::run_ptq("run " + write_job(p, a, 0) + " --quiet").exit_code, 0);
  auto r = test::run_ptq("compress " + p.model + " --tokenizer " + p.tok + " --calib-data " + p.data +
                         " --data-format tinystories --samples 16 --seq-len 128 --seed 3 --method gptq --bits 4"
                         " --group-size 32 --act-order --format fake --out " + b + "/out --eval-data " + p.data +
                         " --eval-format tinystories --eval-seq-len 128 --eval-max-samples 8 --report " + b +
                         "/report --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(file_hashes(a + "/out"), file_hashes(b + "/out"));
  json ja = report_without_times(a), jb = report_without_times(b);
  EXPECT_EQ(ja["eval"], jb["eval"]);
  EXPECT_EQ(ja["layers"], jb["layers"]);
}

}  // namespace
}  // namespace ptq
