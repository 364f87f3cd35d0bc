#pragma once
// Accuracy reports of a job (docs/reports.md): report.json is the record; report.md and the
// self-contained report.html (inline SVG, no network) are rendered from it, so `ptq report`
// can re-render or compare reports later.
//
// Everything but the `times` section is deterministic: the same job twice, or at 1 and 2
// threads, gives identical values (the thread count itself is in `environment.threads`).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/jobs/compress_job.h"
#include "ptq/eval.h"
#include "cli/jobs/job_config.h"

namespace ptq {

struct EvalRow {
  EvalDataset dataset;
  int seq_len = 0;  // after defaulting to the model's context
  bool add_bos = true;    // the tokenizer's rule the text was encoded under
  std::string tokenizer;  // its kind: llama2c, sentencepiece, bpe
  EvalResult fp, quantized;
};

struct OutputFile {
  std::string name;  // relative to the checkpoint directory
  uint64_t bytes = 0;
  std::string sha256;
};

struct JobReport {
  const JobSpec* job = nullptr;
  const CompressResult* compress = nullptr;
  std::vector<EvalRow> evals;
  std::vector<OutputFile> files;
  std::vector<StageTime> times;  // every stage of the job, in order
  int threads = 0;
};

// Every file of a finished checkpoint directory, sorted by name, with size and checksum.
std::vector<OutputFile> list_output_files(const std::string& dir);

nlohmann::json report_to_json(const JobReport& r);
nlohmann::json environment_json(int threads);  // ptq version/commit, compiler, CPU, threads, OpenMP wait

std::string report_markdown(const nlohmann::json& report);
std::string report_html(const nlohmann::json& report);
// The per-layer plots of the HTML report: one <circle> per layer (relative error) and one
// <rect> per layer (bits per weight), with axes and labels.
std::string layer_plots_svg(const nlohmann::json& report);

// Writes report.json, report.md and report.html into `dir` (created), each atomically.
void write_report(const std::string& dir, const nlohmann::json& report);
nlohmann::json read_report(const std::string& path);  // Error naming the file when malformed

// The fp vs quantized perplexity table printed by `ptq run` and `ptq compress`.
std::string ppl_table_text(const nlohmann::json& report);
// Side-by-side comparison of two reports (`ptq report compare A B`).
std::string compare_reports_text(const nlohmann::json& a, const std::string& a_name,
                                 const nlohmann::json& b, const std::string& b_name);

}  // namespace ptq
