#pragma once
// Provenance of a calibration set, written into every checkpoint's metadata and every
// calibration file: which model and data, how the windows were sampled.
#include <cstdint>
#include <string>

namespace ptq {

struct CalibrationInfo {
  std::string model_sha256, data_sha256, data_path, sampler;
  uint64_t seed = 0;
  int samples = 0, seq_len = 0, hidden_size = 0, num_layers = 0;
  int add_bos = -1;  // 1 / 0: the tokenizer's BOS rule the text was encoded under; -1: unknown (token file)
};

}  // namespace ptq
