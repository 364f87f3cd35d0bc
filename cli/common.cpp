#include "cli/common.h"

#include "ptq/error.h"
#include "ptq/fs.h"

namespace ptq::cli {

void TextInputOptions::add_to(CLI::App* sub) {
  sub->add_option("--tokenizer", tokenizer,
                  "Tokenizer file (HF tokenizer.json, SentencePiece .model or llama2.c tokenizer.bin); "
                  "default: the GGUF's own, else the model directory's tokenizer.json / .model / .bin");
  sub->add_option("--tokens", tokens_file,
                  "Pre-tokenized ids instead of text: one whitespace-separated list per line");
}

std::unique_ptr<Tokenizer> open_tokenizer(const Model& model, const std::string& override_path) {
  return open_model_tokenizer(model, override_path);
}

void add_threads_option(CLI::App* sub, int* threads) {
  sub->add_option("--threads", *threads, "Threads (0: OpenMP default / OMP_NUM_THREADS)")
      ->default_val(0);
}

void write_token_windows(const std::string& path, const TokenSeqs& windows) {
  std::string text;
  for (const auto& w : windows) {
    for (size_t i = 0; i < w.size(); ++i) {
      if (i) text += ' ';
      text += std::to_string(w[i]);
    }
    text += "\n";
  }
  write_file_atomic(path, text);
}

}  // namespace ptq::cli
