// Kill-and-resume: a job stopped after a block (deterministically via PTQ_TEST_STOP_AFTER_BLOCK,
// and by a real SIGKILL) continues from its last finished block and writes the same bytes.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/file_hashes.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace fs = std::filesystem;

namespace ptq {
namespace {

using test::file_hashes;

std::string write_job(const std::string& dir, const std::string& model, const std::string& tok,
                      const std::string& data, int seed) {
  std::string path = dir + "/job.yaml";
  std::ofstream(path) << "model:\n  path: " << model << "\n  tokenizer: " << tok << "\n"
                      << "calibration:\n  data: " << data << "\n  format: tinystories\n  samples: 16\n"
                      << "  seq_len: 128\n  seed: " << seed << "\n"
                      << "recipe:\n  - gptq: {bits: 4, group_size: 32, act_order: true}\n"
                      << "overrides:\n  - match: 'layers\\.4\\.mlp\\.down_proj'\n    bits: 8\n"
                      << "output:\n  dir: " << dir << "/out\n  format: fake\n";
  return path;
}

class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::shared_path("models/stories260K/hf");
    tok_ = test::shared_path("models/stories260K/tok512.bin");
    data_ = test::shared_path("data/tinystories/validation_100.txt");
    if (model_.empty() || tok_.empty() || data_.empty()) GTEST_SKIP() << "shared stories260K data not found";
    // The uninterrupted reference run; one per test, since ctest runs tests in parallel processes.
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ref_ = test::temp_dir("resume_reference_" + name);
    auto r = test::run_ptq("run " + write_job(ref_, model_, tok_, data_, 5) + " --quiet");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string model_, tok_, data_, ref_;
};

TEST_F(Resume, StopAfterBlockThenRerunGivesTheSameBytes) {
  std::string d = test::temp_dir("resume_stop");
  std::string job = write_job(d, model_, tok_, data_, 5);
  auto stopped = test::run_ptq("run " + job + " --quiet", "PTQ_TEST_STOP_AFTER_BLOCK=2");
  EXPECT_EQ(stopped.exit_code, 137);
  // Nothing looks like a finished checkpoint; the state of blocks 0..2 is there.
  EXPECT_FALSE(fs::exists(d + "/out"));
  EXPECT_TRUE(fs::exists(d + "/out.partial/resume/block_002.safetensors"));
  EXPECT_FALSE(fs::exists(d + "/out.partial/resume/block_003.safetensors"));
  EXPECT_FALSE(fs::exists(d + "/out.partial/model.safetensors"));

  auto resumed = test::run_ptq("run " + job);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming after block 2"), std::string::npos) << resumed.err;
  EXPECT_EQ(file_hashes(d + "/out"), file_hashes(ref_ + "/out"));
  EXPECT_FALSE(fs::exists(d + "/out.partial"));
}

TEST_F(Resume, ChangedInputInvalidatesTheState) {
  std::string d = test::temp_dir("resume_changed");
  auto stopped = test::run_ptq("run " + write_job(d, model_, tok_, data_, 6) + " --quiet",
                               "PTQ_TEST_STOP_AFTER_BLOCK=1");
  EXPECT_EQ(stopped.exit_code, 137);
  // Same output directory, other seed (the reference's): the state must not be continued.
  auto rerun = test::run_ptq("run " + write_job(d, model_, tok_, data_, 5));
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  EXPECT_NE(rerun.err.find("made from other inputs"), std::string::npos) << rerun.err;
  EXPECT_EQ(rerun.err.find("resuming"), std::string::npos) << rerun.err;
  EXPECT_EQ(file_hashes(d + "/out"), file_hashes(ref_ + "/out"));
}

TEST_F(Resume, RealSigkillPartWayThenRerun) {
  std::string d = test::temp_dir("resume_sigkill");
  std::string job = write_job(d, model_, tok_, data_, 5);
  const std::string bin = test::ptq_binary();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Slow each block down so the kill lands part-way on this tiny model.
    setenv("PTQ_TEST_BLOCK_DELAY_MS", "300", 1);
    execl(bin.c_str(), bin.c_str(), "run", job.c_str(), "--quiet", static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string first_state = d + "/out.partial/resume/block_000.safetensors";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(first_state) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(fs::exists(first_state));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the job finished before it was killed";
  EXPECT_FALSE(fs::exists(d + "/out"));

  auto resumed = test::run_ptq("run " + job);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming after block"), std::string::npos) << resumed.err;
  EXPECT_EQ(file_hashes(d + "/out"), file_hashes(ref_ + "/out"));
}

TEST_F(Resume, FreshIgnoresTheState) {
  std::string d = test::temp_dir("resume_fresh");
  std::string job = write_job(d, model_, tok_, data_, 5);
  EXPECT_EQ(test::run_ptq("run " + job + " --quiet", "PTQ_TEST_STOP_AFTER_BLOCK=0").exit_code, 137);
  auto r = test::run_ptq("run " + job + " --fresh");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("resuming"), std::string::npos) << r.err;
  EXPECT_EQ(file_hashes(d + "/out"), file_hashes(ref_ + "/out"));
}

TEST_F(Resume, IndependentModeFromAnActivationFile) {
  std::string d = test::temp_dir("resume_independent");
  auto cal = test::run_ptq("calibrate " + model_ + " --tokenizer " + tok_ + " --data " + data_ +
                           " --data-format tinystories --samples 16 --seq-len 128 --capture all --quiet --out " + d +
                           "/acts.h5");
  ASSERT_EQ(cal.exit_code, 0) << cal.err;
  auto job = [&](const std::string& out) {
    std::string path = d + "/" + out + ".yaml";
    std::ofstream(path) << "model: {path: " << model_ << "}\n"
                        << "calibration: {activations: " << d << "/acts.h5, mode: independent}\n"
                        << "recipe: \"gptq(w4,g32)\"\n"
                        << "output: {dir: " << d << "/" << out << "}\n";
    return path;
  };
  ASSERT_EQ(test::run_ptq("run " + job("whole") + " --quiet").exit_code, 0);
  EXPECT_EQ(test::run_ptq("run " + job("split") + " --quiet", "PTQ_TEST_STOP_AFTER_BLOCK=3").exit_code, 137);
  auto resumed = test::run_ptq("run " + job("split"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming after block 3"), std::string::npos) << resumed.err;
  EXPECT_EQ(file_hashes(d + "/split"), file_hashes(d + "/whole"));
}

}  // namespace
}  // namespace ptq
