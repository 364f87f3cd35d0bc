#include <cstdio>

#include "ptq/spec.h"
#include "ptq/stages.h"
#include "cli/common.h"
#include "cli/job_cli.h"
#include "formats/checkpoint_writer.h"
#include "ptq/error.h"
#include "cli/jobs/job_config.h"

namespace ptq::cli {
namespace {

struct CompressOptions {
  std::string model, method = "gptq", recipe, calib, calib_data, data_format = "text", out,
                     format = "gptq", mode = "sequential", eval_data, eval_format = "text", report;
  int bits = 4, group_size = 128, samples = 128, seq_len = 2048, threads = 0, eval_seq_len = 0,
      eval_max_samples = 0;
  uint64_t seed = 0;
  bool sym = false, act_order = false, no_true_sequential = false, fresh = false, overwrite = false;
  ProgressOptions progress;
  TextInputOptions text;
};

// The one-shot flags are sugar for a spec string: `--method gptq --bits 4 --group-size 128
// --act-order` is the recipe `gptq(w4,g128,act_order)`.
std::string recipe_from_flags(const CompressOptions& o) {
  // A transform alone (e.g. awq) quantizes with round-to-nearest after it.
  const std::string head = is_transform(o.method) ? o.method + "+rtn" : o.method;
  std::string s = head + "(w" + std::to_string(o.bits) + ",g" + std::to_string(o.group_size);
  if (o.sym) s += ",sym";
  if (o.act_order) s += ",act_order";
  return s + ")";
}

// The flags as a job, so `ptq compress` and `ptq run` share one code path (run_job).
JobSpec job_from_flags(const CompressOptions& o) {
  JobSpec job;
  CompressJob& c = job.compress;
  c.model_path = o.model;
  c.tokenizer = o.text.tokenizer;
  c.out_dir = o.out;
  c.format = o.format;
  c.calib_file = o.calib;
  c.independent = o.mode == "independent";
  c.fresh = o.fresh;
  c.overwrite = o.overwrite;
  std::string data = o.text.tokens_file.empty() ? o.calib_data : o.text.tokens_file;
  if (!data.empty()) {
    if (!o.calib.empty()) throw ptq::Error("compress: pass either --calib or --calib-data, not both");
    c.has_calib_request = true;
    c.calib_request = {data, parse_data_format(o.data_format), !o.text.tokens_file.empty(),
                       o.samples, o.seq_len, o.seed};
  }
  c.pipeline.recipe = parse_recipe(o.recipe.empty() ? recipe_from_flags(o) : o.recipe);
  c.pipeline.true_sequential = !o.no_true_sequential;
  c.pipeline.quiet = o.progress.quiet;
  if (!o.eval_data.empty())
    job.evals.push_back({o.eval_data, parse_data_format(o.eval_format), o.eval_seq_len, o.eval_max_samples, ""});
  job.report_dir = o.report;
  job.threads = o.threads;
  return job;
}

std::string format_list() {
  std::string s;
  for (const auto& f : format_names()) s += (s.empty() ? "" : ", ") + f;
  return s;
}

CommandRegistrar reg("compress", "Quantize a model in one shot (same code path as `ptq run`)",
                     [](CLI::App* sub) {
  auto o = std::make_shared<CompressOptions>();
  sub->add_option("model", o->model, "HF directory, llama2.c .bin or GGUF file")->required();
  sub->add_option("--method", o->method, "Quantizer (registered name, e.g. rtn, gptq)")
      ->default_val("gptq");
  sub->add_option("--recipe", o->recipe,
                  "Recipe spec string, e.g. 'awq+gptq(w4,g128,act_order)'; overrides --method/--bits/... "
                  "(default: built from those flags)");
  sub->add_option("--bits", o->bits, "Weight bits (2..8)")->default_val(4);
  sub->add_option("--group-size", o->group_size, "Group size along the input dim (-1: per channel)")
      ->default_val(128);
  sub->add_flag("--sym", o->sym, "Symmetric grid (default: asymmetric)");
  sub->add_flag("--act-order", o->act_order,
                "GPTQ: quantize columns by descending Hessian diagonal (default: off)");
  sub->add_option("--calib", o->calib, "Calibration HDF5 file from `ptq calibrate` (default: none)");
  sub->add_option("--calib-data", o->calib_data, "Calibration text file to sample windows from (default: none)");
  sub->add_option("--data-format", o->data_format, "Format of --calib-data: tinystories, wikitext2, text")
      ->default_val("text")
      ->check(CLI::IsMember({"tinystories", "wikitext2", "text"}));
  sub->add_option("--samples", o->samples, "Calibration windows")->default_val(128);
  sub->add_option("--seq-len", o->seq_len, "Tokens per calibration window")->default_val(2048);
  sub->add_option("--seed", o->seed, "Calibration sampler seed")->default_val(0);
  sub->add_option("--mode", o->mode,
                  "sequential (run the model, block inputs from quantized earlier blocks) or "
                  "independent (layer inputs from --calib's captured activations)")
      ->default_val("sequential")
      ->check(CLI::IsMember({"sequential", "independent"}));
  sub->add_flag("--no-true-sequential", o->no_true_sequential,
                "Quantize all of a block's layers on the block's fp inputs (default: off)");
  // Open string checked against the registry, so new formats need no change here.
  sub->add_option("--format", o->format, "Output format spec (" + format_list() + ")")
      ->default_val("gptq")
      ->check(CLI::Validator(
          [](std::string& v) {
            try {
              format_traits(v);
              return std::string();
            } catch (const ptq::Error& e) {
              return std::string(e.what());
            }
          },
          "FORMAT"));
  sub->add_option("--out", o->out, "Output directory (staged in OUT.partial until complete)")->required();
  sub->add_flag("--overwrite", o->overwrite,
                "Replace an OUT holding another job's ptq checkpoint, or add ptq's files to a non-empty "
                "directory; ptq never removes a file it did not write (default: off, refuse)");
  sub->add_flag("--fresh", o->fresh,
                "Ignore resume state of an interrupted run and start over (default: off, resume)");
  sub->add_option("--eval-data", o->eval_data,
                  "Text file to evaluate the fp model and the output on (default: none)");
  sub->add_option("--eval-format", o->eval_format, "Protocol of --eval-data: tinystories, wikitext2, text")
      ->default_val("text")
      ->check(CLI::IsMember({"tinystories", "wikitext2", "text"}));
  sub->add_option("--eval-seq-len", o->eval_seq_len, "Evaluation window (0: the model's context)")
      ->default_val(0);
  sub->add_option("--eval-max-samples", o->eval_max_samples, "Sequences to score (0: all)")->default_val(0);
  sub->add_option("--report", o->report, "Directory for report.json/.md/.html (default: none)");
  o->progress.add_to(sub);
  add_threads_option(sub, &o->threads);
  o->text.add_to(sub);
  return [o]() {
    o->progress.apply();
    JobSpec job = job_from_flags(*o);
    print_outcome(job, run_job(job), true);
    return 0;
  };
});

}  // namespace
}  // namespace ptq::cli
