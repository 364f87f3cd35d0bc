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
  return open_model_tokenizer(model.path(), model.config().vocab_size, override_path);
}

void add_threads_option(CLI::App* sub, int* threads) {
  sub->add_option("--threads", *threads, "Threads (0: OpenMP default / OMP_NUM_THREADS)")
      ->default_val(0);
}

}  // namespace ptq::cli
