#pragma once
// One compression job: open the model, build or read calibration data, run the pipeline, write
// the output. `ptq compress` and `ptq run` both go through run_compress (via run_job,
// ptq/job_run.h, which adds evaluation and the report).
//
// The output is staged in OUT.partial/ with resume state per finished block
// (ptq/resume_state.h): a killed job rerun with the same inputs continues from its last
// finished block and writes the same bytes as an uninterrupted run.
#include <map>
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
  std::string format = "gptq";
  bool fresh = false;              // ignore resume state left by an interrupted run
  bool overwrite = false;          // replace an OUT that holds another job's (or no) checkpoint
};

struct StageTime {
  std::string stage;
  double seconds = 0;
};

struct CompressResult {
  std::vector<LayerResult> layers;
  bool has_calibration = false;
  CalibrationInfo calibration;
  std::string model_sha256;
  std::string calib_file_sha256;  // the activation file, when the job read one
  std::string recipe;
  int resumed_blocks = 0;         // blocks taken from an interrupted run's state
  std::vector<StageTime> times;   // calibration, quantize, write
  double seconds = 0;
};

CompressResult run_compress(const CompressJob& job);

// Every layer's grid must fit the output format and every recipe stage must name a registered
// algorithm; throws Error before any long work otherwise.
void validate_job_layers(const CompressJob& job);

// Appends to o.overrides, for every layer the format overrides (FormatTraits::layer_override: a
// preset mixture, a replacement for a shape it cannot hold), an override naming exactly that
// layer, and returns one line per override ("layer: why").
struct FormatTraits;
std::vector<std::string> add_format_fallbacks(const Model& model, const FormatTraits& format, PipelineOptions& o);

// Throws Error when `model` is a packed checkpoint: re-quantizing packed codes would compound
// two roundings, so ptq asks for the full-precision source instead.
void reject_quantized_source(const Model& model);

// Test hook: with PTQ_TEST_STOP_AFTER_BLOCK=N in the environment, the process _exit(137)s right
// after saving block N's resume state (a deterministic stand-in for kill -9).
inline constexpr const char* kStopAfterBlockEnv = "PTQ_TEST_STOP_AFTER_BLOCK";
// Test hook: PTQ_TEST_BLOCK_DELAY_MS=M sleeps M ms after saving each block's state, so a test can
// SIGKILL a tiny model's job part-way.
inline constexpr const char* kBlockDelayEnv = "PTQ_TEST_BLOCK_DELAY_MS";

}  // namespace ptq
