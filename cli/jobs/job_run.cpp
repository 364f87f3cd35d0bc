#include "cli/jobs/job_run.h"

#include <chrono>
#include <filesystem>

#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "ptq/error.h"
#include "formats/loaded_model.h"
#include "ptq/parallel.h"
#include "ptq/progress.h"

namespace ptq {
namespace {

using Clock = std::chrono::steady_clock;

EvalResult evaluate(const LoadedModel& lm, const TokenSeqs& seqs, const std::string& label, bool quiet) {
  Progress bar(label, seqs.size(), quiet);
  EvalResult r = evaluate_perplexity([&](const std::vector<int32_t>& ids) { return lm.forward->logits(ids); },
                                     seqs, [&](size_t d, size_t) { bar.update(d); });
  bar.finish();
  return r;
}

// Scores one dataset on the fp model and on the output, with the same token sequences.
EvalRow evaluate_dataset(const JobSpec& job, const EvalDataset& d, const LoadedModel& fp,
                         const LoadedModel& quant, std::vector<StageTime>& times) {
  auto tok = open_model_tokenizer(fp.model, d.tokenizer.empty() ? job.compress.tokenizer : d.tokenizer);
  EvalRow row;
  row.dataset = d;
  row.add_bos = tok->adds_bos();
  row.tokenizer = tok->kind();
  row.seq_len = d.seq_len > 0 ? d.seq_len : fp.model.config().max_position_embeddings;
  TokenSeqs seqs = eval_sequences(tokenize_documents(d.path, d.format, tok.get(), false), d.format,
                                  row.seq_len, d.max_samples);
  if (seqs.empty()) throw Error(d.path + ": no sequence of at least 2 tokens to evaluate");
  const bool quiet = job.compress.pipeline.quiet;
  auto t0 = Clock::now();
  row.fp = evaluate(fp, seqs, "eval fp", quiet);
  auto t1 = Clock::now();
  row.quantized = evaluate(quant, seqs, "eval quant", quiet);
  const std::string name = std::filesystem::path(d.path).filename().string();
  times.push_back({"eval fp " + name, std::chrono::duration<double>(t1 - t0).count()});
  times.push_back({"eval quantized " + name, std::chrono::duration<double>(Clock::now() - t1).count()});
  return row;
}

}  // namespace

JobOutcome run_job(const JobSpec& job) {
  set_num_threads(job.threads);
  JobOutcome outcome;
  outcome.compress = run_compress(job.compress);
  JobReport rep;
  rep.job = &job;
  rep.compress = &outcome.compress;
  rep.threads = num_threads();
  rep.times = outcome.compress.times;
  if (!job.evals.empty()) {
    LoadedModel fp = load_model_for_inference(job.compress.model_path);
    LoadedModel quant = load_model_for_inference(job.compress.out_dir);
    for (const auto& d : job.evals) rep.evals.push_back(evaluate_dataset(job, d, fp, quant, rep.times));
  }
  rep.files = list_output_files(job.compress.out_dir);
  outcome.report = report_to_json(rep);
  if (!job.report_dir.empty()) write_report(job.report_dir, outcome.report);
  return outcome;
}

}  // namespace ptq
