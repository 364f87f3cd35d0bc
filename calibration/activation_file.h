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
#include "ptq/calibration_info.h"
#include "ptq/captured_inputs.h"
#include "ptq/forward.h"
#include "ptq/tensor.h"

namespace ptq {

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

class ActivationFile final : public CapturedInputs {
 public:
  // Throws Error naming the file. Checks, in this order and before any data is read: the
  // superblock (plain I/O), then in an isolated child process (ptq/isolated.h) and again here:
  // the ptq_format and version attributes, every attribute's type and size, /tokens and every
  // activation dataset's type, rank, layout and stored size against the file's size; the child
  // also checks that every chunk lies inside the file. Hard links only; no filters.
  explicit ActivationFile(const std::string& path);
  ~ActivationFile();
  const CalibrationInfo& info() const { return info_; }
  const TokenSeqs& windows() const { return windows_; }
  // Dataset path holding the input of HF module `module` (e.g. model.layers.0.mlp.down_proj),
  // or "" when the file has none.
  std::string find_input(const std::string& module) const;
  int64_t rows(const std::string& dataset) const;
  int64_t cols(const std::string& dataset) const;
  Mat read_rows(const std::string& dataset, int64_t begin, int64_t count) const;
  // Checks the file fits `cfg` (hidden size, layer count, feature widths, token ids within the
  // vocabulary, window lengths within the positions); Error otherwise.
  void check_fits(const ModelConfig& cfg) const override;
  // The input of `module` read one window (seq_len rows) per batch; Error when none lists it.
  InputStats input_stats(const std::string& module) const override;

 private:
  struct Scan;
  void scan(int64_t file, uint64_t file_size, bool walk_chunks, Scan* out) const;
  std::pair<int64_t, int64_t> dims(const std::string& dataset) const;

  std::string path_;
  int64_t file_ = -1;
  CalibrationInfo info_;
  TokenSeqs windows_;
  std::map<std::string, std::string> consumer_to_dataset_;
  std::map<std::string, std::pair<int64_t, int64_t>> dims_;  // rows, cols of every activation dataset
};

std::string activation_dataset(int layer, LinearInput g);  // "/activations/layer_000/qkv"

}  // namespace ptq
