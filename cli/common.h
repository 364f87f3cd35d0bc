#pragma once
// Options shared by the subcommands that read a model and text.
#include <memory>
#include <string>

#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "cli/command.h"
#include "ptq/model.h"

namespace ptq::cli {

struct TextInputOptions {
  std::string tokenizer;    // --tokenizer FILE; default: MODEL/tokenizer.model
  std::string tokens_file;  // --tokens FILE (pre-tokenized ids)
  void add_to(CLI::App* sub);
};

// The tokenizer for `model`: --tokenizer when given, else the HF directory's tokenizer.model.
// Throws Error saying what to pass when none is found.
std::unique_ptr<Tokenizer> open_tokenizer(const Model& model, const std::string& override_path);

void add_threads_option(CLI::App* sub, int* threads);

// Windows as `--tokens` reads them: one line of space-separated ids each, written atomically.
void write_token_windows(const std::string& path, const TokenSeqs& windows);

}  // namespace ptq::cli
