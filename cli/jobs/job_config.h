#pragma once
// YAML job files for `ptq run` (schema: docs/jobs.md, `ptq run --print-schema`).
//
// A job is a CompressJob plus the evaluations to run on the fp model and the output, the report
// directory and the thread count. Relative paths in the file resolve against the current
// directory (as on the command line), not the YAML file's directory.
//
// Every error quotes the file, line and column of the offending node: unknown keys, wrong
// types, unknown algorithms or formats, and grids the output format cannot hold.
#include <cstdint>
#include <string>
#include <vector>

#include "calibration/text_data.h"
#include "cli/jobs/compress_job.h"

namespace ptq {

struct EvalDataset {
  std::string path;
  DataFormat format = DataFormat::kText;
  int seq_len = 0;      // 0: the model's max_position_embeddings
  int max_samples = 0;  // 0: all
  std::string tokenizer;  // "" = the job's model tokenizer
};

struct JobSpec {
  std::string source = "command line";  // the YAML file, for messages and the report
  CompressJob compress;
  std::vector<EvalDataset> evals;
  std::string report_dir;  // "" = no report
  int threads = 0;         // 0: OpenMP default
};

// Job files are small; the cap keeps yaml-cpp's recursive parser and anchors far from any
// limit (nesting beyond 2000 levels is refused by yaml-cpp itself).
inline constexpr uint64_t kMaxJobFileBytes = 1 << 20;

JobSpec load_job_file(const std::string& path);
// `source` names the text in messages (a file path).
JobSpec parse_job_yaml(const std::string& text, const std::string& source);

// The schema, as printed by `ptq run --print-schema`.
const std::string& job_schema_text();

// The recipe list form: `- gptq: {bits: 4, group_size: 128, act_order: true}` becomes
// gptq(w4,g128,act_order). bits → w and group_size → g come first, other keys in file order;
// true → a bare flag, false → omitted, anything else → key=value.
// (Exposed for tests; parse_job_yaml uses it.)
std::vector<Spec> recipe_from_yaml_text(const std::string& yaml_text);

}  // namespace ptq
