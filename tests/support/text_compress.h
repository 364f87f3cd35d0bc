#pragma once
// The compress job most end-to-end tests run: a model calibrated on `samples` windows of
// `seq_len` tokens of a text file (seed 0), quiet, fresh, into a new temporary directory.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cli/jobs/compress_job.h"

namespace ptq::test {

CompressJob text_compress_job(const std::string& model, const std::string& calib, const std::string& recipe,
                              const std::string& format, const std::string& name, int samples = 8, int seq_len = 64);

// Fixture for tests that compress pydoc4M on pydoc text; skips when the shared data is absent.
class PydocCompressTest : public ::testing::Test {
 protected:
  void SetUp() override;
  // Runs the job into a fresh directory named after `prefix` + `name`; returns the output dir.
  std::string compress(const std::string& recipe, const std::string& format, const std::string& name);
  std::string prefix_ = "pydoc_";
  std::string model_, calib_;
};

// n token ids spread over pydoc4M's 2048-token vocabulary.
std::vector<int32_t> spread_ids(int n);

}  // namespace ptq::test
