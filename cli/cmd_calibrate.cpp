#include <cstdio>

#include "calibration/calibration_set.h"
#include "cli/common.h"
#include "ptq/error.h"
#include "ptq/parallel.h"

namespace ptq::cli {
namespace {

struct CalibrateOptions {
  std::string model, data, format = "text", out, capture = "none", windows_out;
  int samples = 128, seq_len = 2048, threads = 0;
  uint64_t seed = 0;
  bool quiet = false;
  TextInputOptions text;
};

int run_calibrate(const CalibrateOptions& o) {
  set_num_threads(o.threads);
  Model model = Model::open(o.model);
  CalibrationRequest req;
  req.token_file = !o.text.tokens_file.empty();
  req.data = req.token_file ? o.text.tokens_file : o.data;
  req.format = parse_data_format(o.format);
  req.samples = o.samples;
  req.seq_len = o.seq_len;
  req.seed = o.seed;
  std::unique_ptr<Tokenizer> tok;
  if (!req.token_file) tok = open_tokenizer(model, o.text.tokenizer);
  CalibrationSet set = build_calibration_set(model, tok.get(), req);
  write_calibration_file(o.out, model, set, o.capture == "all", o.quiet);
  if (!o.windows_out.empty()) write_token_windows(o.windows_out, set.windows);
  if (!o.quiet)
    std::fprintf(stderr, "calibrate: %d windows of %d tokens (seed %llu, %s) -> %s\n", o.samples,
                 o.seq_len, (unsigned long long)o.seed, set.info.sampler.c_str(), o.out.c_str());
  return 0;
}

CommandRegistrar reg("calibrate", "Sample calibration windows and capture layer inputs to HDF5",
                     [](CLI::App* sub) {
  auto o = std::make_shared<CalibrateOptions>();
  sub->add_option("model", o->model, "HF directory, llama2.c .bin or GGUF file")->required();
  sub->add_option("--data", o->data, "Calibration text file");
  sub->add_option("--data-format", o->format, "tinystories, wikitext2 or text")
      ->default_val("text")
      ->check(CLI::IsMember({"tinystories", "wikitext2", "text"}));
  sub->add_option("--samples", o->samples, "Number of windows")->default_val(128);
  sub->add_option("--seq-len", o->seq_len, "Tokens per window")->default_val(2048);
  sub->add_option("--seed", o->seed, "Sampler seed")->default_val(0);
  sub->add_option("--out", o->out, "Output HDF5 file")->required();
  sub->add_option("--capture", o->capture,
                  "all: store every linear group's input activations; none: token ids only")
      ->default_val("none")
      ->check(CLI::IsMember({"all", "none"}));
  sub->add_option("--windows-out", o->windows_out,
                  "Also write the sampled windows as token ids, one window per line (what --tokens reads and "
                  "other tools can calibrate on)");
  sub->add_flag("--quiet", o->quiet, "No progress on stderr");
  add_threads_option(sub, &o->threads);
  o->text.add_to(sub);
  return [o]() {
    if (o->data.empty() && o->text.tokens_file.empty())
      throw ptq::Error("calibrate: pass --data FILE or --tokens FILE");
    return run_calibrate(*o);
  };
});

}  // namespace
}  // namespace ptq::cli
