#pragma once
// One compression job: open the model, build or read calibration data, run the pipeline, write
// the output. `ptq compress` and `ptq run` both go through run_compress.
#include <string>
#include <vector>

#include "calibration/calibration_set.h"
#include "ptq/pipeline.h"

namespace ptq {

struct CompressJob {
  std::string model_path;
  std::string tokenizer;           // "" = the model directory's own
  bool has_calib_request = false;  // sample windows from text / token data
  CalibrationRequest calib_request;
  std::string calib_file;          // a calibration HDF5 file instead of calib_request
  bool independent = false;        // quantize from the file's captured activations
  PipelineOptions pipeline;
  std::string out_dir;
  std::string format = "fake";
};

struct CompressResult {
  std::vector<LayerResult> layers;
  bool has_calibration = false;
  CalibrationInfo calibration;
  std::string recipe;
  double seconds = 0;
};

CompressResult run_compress(const CompressJob& job);

}  // namespace ptq
