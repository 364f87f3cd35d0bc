#pragma once
// A calibration set: the sampled token windows plus their provenance (written into every
// checkpoint's metadata and every calibration file).
#include <cstdint>
#include <string>

#include "calibration/activation_file.h"
#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "ptq/model.h"

namespace ptq {

struct CalibrationRequest {
  std::string data;  // text file, or a token file when token_file
  DataFormat format = DataFormat::kText;
  bool token_file = false;
  int samples = 128;
  int seq_len = 2048;
  uint64_t seed = 0;
};

struct CalibrationSet {
  TokenSeqs windows;
  CalibrationInfo info;
};

CalibrationSet build_calibration_set(const Model& model, const Tokenizer* tok,
                                     const CalibrationRequest& req);
// A set read back from a calibration HDF5 file (its token windows and provenance).
CalibrationSet calibration_set_from_file(const ActivationFile& file);

// Writes `set` to an HDF5 file; with capture_all, also the fp model's input activations of
// every linear group of every layer (streamed block by block).
void write_calibration_file(const std::string& path, const Model& model, const CalibrationSet& set,
                            bool capture_all, bool quiet);

}  // namespace ptq
