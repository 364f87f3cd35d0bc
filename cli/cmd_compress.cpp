#include <cstdio>

#include "algorithms/spec.h"
#include "cli/common.h"
#include "ptq/compress_job.h"
#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq::cli {
namespace {

struct CompressOptions {
  std::string model, method = "gptq", recipe, calib, calib_data, data_format = "text", out,
                     format = "fake", mode = "sequential";
  int bits = 4, group_size = 128, samples = 128, seq_len = 2048, threads = 0;
  uint64_t seed = 0;
  bool sym = false, act_order = false, no_true_sequential = false, quiet = false;
  TextInputOptions text;
};

// The one-shot flags are sugar for a spec string: `--method gptq --bits 4 --group-size 128
// --act-order` is the recipe `gptq(w4,g128,act_order)`.
std::string recipe_from_flags(const CompressOptions& o) {
  std::string s = o.method + "(w" + std::to_string(o.bits) + ",g" + std::to_string(o.group_size);
  if (o.sym) s += ",sym";
  if (o.act_order) s += ",act_order";
  return s + ")";
}

int run_compress_cmd(const CompressOptions& o) {
  set_num_threads(o.threads);
  CompressJob job;
  job.model_path = o.model;
  job.tokenizer = o.text.tokenizer;
  job.out_dir = o.out;
  job.format = o.format;
  job.calib_file = o.calib;
  job.independent = o.mode == "independent";
  std::string data = o.text.tokens_file.empty() ? o.calib_data : o.text.tokens_file;
  if (!data.empty()) {
    if (!o.calib.empty()) throw ptq::Error("compress: pass either --calib or --calib-data, not both");
    job.has_calib_request = true;
    job.calib_request = {data, parse_data_format(o.data_format), !o.text.tokens_file.empty(),
                         o.samples, o.seq_len, o.seed};
  }
  job.pipeline.recipe = parse_recipe(o.recipe.empty() ? recipe_from_flags(o) : o.recipe);
  job.pipeline.true_sequential = !o.no_true_sequential;
  job.pipeline.quiet = o.quiet;
  CompressResult r = run_compress(job);
  if (!o.quiet) {
    std::fprintf(stderr, "compress: %s, %zu layers in %.2fs -> %s\n", r.recipe.c_str(),
                 r.layers.size(), r.seconds, o.out.c_str());
  }
  std::printf("%-40s %-24s %12s %8s\n", "layer", "spec", "rel_error", "bits/w");
  for (const auto& l : r.layers)
    std::printf("%-40s %-24s %12.6g %8.3f\n", l.name.c_str(), l.spec.c_str(), l.rel_error,
                l.bits_per_weight);
  return 0;
}

CommandRegistrar reg("compress", "Quantize a model in one shot (fake-quant HF output)",
                     [](CLI::App* sub) {
  auto o = std::make_shared<CompressOptions>();
  sub->add_option("model", o->model, "HF directory or llama2.c .bin")->required();
  sub->add_option("--method", o->method, "Quantizer (registered name, e.g. rtn, gptq)")
      ->default_val("gptq");
  sub->add_option("--recipe", o->recipe,
                  "Recipe spec string, e.g. 'gptq(w4,g128,act_order)'; overrides --method/--bits/...");
  sub->add_option("--bits", o->bits, "Weight bits (2..8)")->default_val(4);
  sub->add_option("--group-size", o->group_size, "Group size along the input dim (-1: per channel)")
      ->default_val(128);
  sub->add_flag("--sym", o->sym, "Symmetric grid (default asymmetric)");
  sub->add_flag("--act-order", o->act_order, "GPTQ: quantize columns by descending Hessian diagonal");
  sub->add_option("--calib", o->calib, "Calibration HDF5 file from `ptq calibrate`");
  sub->add_option("--calib-data", o->calib_data, "Calibration text file to sample windows from");
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
                "Quantize all of a block's layers on the block's fp inputs");
  sub->add_option("--format", o->format, "Output format: gptq, awq or fake")->default_val("gptq");
  sub->add_option("--out", o->out, "Output directory")->required();
  sub->add_flag("--quiet", o->quiet, "No progress on stderr");
  add_threads_option(sub, &o->threads);
  o->text.add_to(sub);
  return [o]() { return run_compress_cmd(*o); };
});

}  // namespace
}  // namespace ptq::cli
