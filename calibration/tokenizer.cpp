#include "calibration/tokenizer.h"

#include <fstream>

#include "calibration/llama2c_tokenizer.h"
#include "calibration/sentencepiece_tokenizer.h"
#include "ptq/error.h"
#include "ptq/fs.h"

namespace ptq {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, int expected_vocab) {
  require_file(path, "a tokenizer file (SentencePiece .model or llama2.c tokenizer.bin)");
  if (!std::ifstream(path, std::ios::binary)) throw Error(path + ": cannot open");
  // A tokenizer.bin opens with a small little-endian int whose zero high bytes read as the
  // invalid protobuf tag 0, so in practice it never parses as a model proto and SentencePiece
  // can be tried first; the llama2.c parser then gives the precise complaint.
  std::string sp_reason;
  if (auto sp = SentencePieceTokenizer::try_load(path, &sp_reason)) {
    if (expected_vocab > 0 && sp->vocab_size() != expected_vocab)
      throw Error(path + ": SentencePiece model has " + std::to_string(sp->vocab_size()) +
                  " pieces, expected the model's vocabulary of " + std::to_string(expected_vocab));
    return sp;
  }
  try {
    return Llama2cTokenizer::load(path, expected_vocab);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (nor a SentencePiece model: " + sp_reason + ")");
  }
}

}  // namespace ptq
