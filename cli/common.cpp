#include "cli/common.h"

#include "ptq/error.h"

namespace ptq::cli {

void TextInputOptions::add_to(CLI::App* sub) {
  sub->add_option("--tokenizer", tokenizer,
                  "Tokenizer file (SentencePiece .model or llama2.c tokenizer.bin); default: the "
                  "model directory's tokenizer.model");
  sub->add_option("--tokens", tokens_file,
                  "Pre-tokenized ids instead of text: one whitespace-separated list per line");
}

std::unique_ptr<Tokenizer> open_tokenizer(const Model& model, const std::string& override_path) {
  std::string path = find_model_tokenizer(model.path(), override_path);
  if (path.empty())
    throw Error(model.path() + ": no tokenizer.model or tokenizer.bin beside the model; pass --tokenizer FILE or "
                               "--tokens FILE");
  auto tok = load_tokenizer(path);
  if (tok->vocab_size() > model.config().vocab_size)
    throw Error(path + ": tokenizer has " + std::to_string(tok->vocab_size()) +
                " tokens but the model's vocabulary is " +
                std::to_string(model.config().vocab_size));
  return tok;
}

void add_threads_option(CLI::App* sub, int* threads) {
  sub->add_option("--threads", *threads, "Threads (0: OpenMP default / OMP_NUM_THREADS)")
      ->default_val(0);
}

}  // namespace ptq::cli
