#pragma once
// Calibration HDF5 files (schema in docs/calibration.md):
//   /                      attributes: ptq_format="ptq-calibration", version=1, model_sha256,
//                          data_sha256, data_path, seed, sampler, samples, seq_len,
//                          hidden_size, num_layers, add_bos (1/0; absent for token files
//                          and older files)
//   /tokens                int32 [samples, seq_len]
//   /activations/layer_LLL/{qkv,o,gate_up,down}
//                          float32 [samples*seq_len, in_features], attribute `consumers`: the
//                          comma-separated HF module names that read this input
// Files from other frameworks (e.g. PyTorch forward hooks) may hold any subset of layers and
// only the groups they need; a linear layer finds its input through `consumers`.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "calibration/text_data.h"
#include "ptq/forward.h"
#include "ptq/tensor.h"

namespace ptq {

struct CalibrationInfo {
  std::string model_sha256, data_sha256, data_path, sampler;
  uint64_t seed = 0;
  int samples = 0, seq_len = 0, hidden_size = 0, num_layers = 0;
  int add_bos = -1;  // 1 / 0: the tokenizer's BOS rule the text was encoded under; -1: unknown (token file)
};

class ActivationFileWriter {
 public:
  ActivationFileWriter(const std::string& path, const CalibrationInfo& info,
                       const TokenSeqs& windows);  // writes to path.tmp; commit() renames
  ~ActivationFileWriter();
  // Creates the dataset for (layer, group) with `features` columns.
  void begin_group(int layer, LinearInput g, int features);
  // Appends rows to the dataset created by the last begin_group for this (layer, group).
  void append(int layer, LinearInput g, const Mat& rows);
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ActivationFile {
 public:
  explicit ActivationFile(const std::string& path);  // throws Error naming the file
  ~ActivationFile();
  const CalibrationInfo& info() const { return info_; }
  const TokenSeqs& windows() const { return windows_; }
  // Dataset path holding the input of HF module `module` (e.g. model.layers.0.mlp.down_proj),
  // or "" when the file has none.
  std::string find_input(const std::string& module) const;
  int64_t rows(const std::string& dataset) const;
  int64_t cols(const std::string& dataset) const;
  Mat read_rows(const std::string& dataset, int64_t begin, int64_t count) const;
  // Checks the file fits `cfg` (hidden size, layer count, feature widths); Error otherwise.
  void check_fits(const ModelConfig& cfg) const;

 private:
  std::string path_;
  int64_t file_ = -1;
  CalibrationInfo info_;
  TokenSeqs windows_;
  std::map<std::string, std::string> consumer_to_dataset_;
};

std::string activation_dataset(int layer, LinearInput g);  // "/activations/layer_000/qkv"

}  // namespace ptq
