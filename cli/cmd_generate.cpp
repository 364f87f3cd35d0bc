#include <cstdio>

#include "cli/common.h"
#include "formats/loaded_model.h"
#include "ptq/generate.h"
#include "ptq/parallel.h"

namespace ptq::cli {
namespace {

struct GenerateOptions {
  std::string model, prompt;
  SamplingOptions sampling;
  int threads = 0;
  bool ids = false;
  TextInputOptions text;
};

int run_generate(const GenerateOptions& o) {
  set_num_threads(o.threads);
  LoadedModel lm = load_model_for_inference(o.model);
  auto tok = open_tokenizer(lm.model, o.text.tokenizer);
  std::vector<int32_t> prompt = tok->encode_with_special(o.prompt, tok->adds_bos());
  if (o.prompt.empty()) prompt = {tok->bos_id()};
  std::vector<int32_t> out = generate(*lm.forward, prompt, o.sampling, tok->eos_id());
  if (o.ids) {
    for (size_t i = 0; i < out.size(); ++i) std::printf("%s%d", i ? " " : "", out[i]);
    std::printf("\n");
  } else {
    std::printf("%s\n", tok->decode(out).c_str());
  }
  return 0;
}

CommandRegistrar reg("generate", "Generate text from a model (greedy or seeded sampling)",
                     [](CLI::App* sub) {
  auto o = std::make_shared<GenerateOptions>();
  sub->add_option("model", o->model, "HF directory, llama2.c .bin, GGUF file, or ptq output directory")
      ->required();
  sub->add_option("--prompt", o->prompt, "Prompt text (empty: start from BOS)")->default_val("");
  sub->add_option("--max-tokens", o->sampling.max_tokens, "Tokens to generate")->default_val(128);
  sub->add_option("--temperature", o->sampling.temperature, "0 = greedy")->default_val(0.0);
  sub->add_option("--top-p", o->sampling.top_p, "Nucleus sampling mass")->default_val(1.0);
  sub->add_option("--seed", o->sampling.seed, "Sampler seed")->default_val(0);
  sub->add_flag("--ids", o->ids, "Print token ids instead of text");
  add_threads_option(sub, &o->threads);
  sub->add_option("--tokenizer", o->text.tokenizer,
                  "Tokenizer file (default: the GGUF's own, else MODEL/tokenizer.json / .model / .bin)");
  return [o]() { return run_generate(*o); };
});

}  // namespace
}  // namespace ptq::cli
