#pragma once
// The compress job most end-to-end tests run: a model calibrated on `samples` windows of
// `seq_len` tokens of a text file (seed 0), quiet, fresh, into a new temporary directory.
#include <string>

#include "cli/jobs/compress_job.h"

namespace ptq::test {

CompressJob text_compress_job(const std::string& model, const std::string& calib, const std::string& recipe,
                              const std::string& format, const std::string& name, int samples = 8, int seq_len = 64);

}  // namespace ptq::test
