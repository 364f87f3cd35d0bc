#include "calibration/tokenizer.h"

#include <fstream>

#include "calibration/bpe_tokenizer.h"
#include "calibration/llama2c_tokenizer.h"
#include "calibration/sentencepiece_tokenizer.h"
#include "calibration/tokenizer_json.h"
#include "ptq/error.h"
#include "ptq/fs.h"

namespace ptq {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, int expected_vocab) {
  require_file(path, "a tokenizer file (SentencePiece .model or llama2.c tokenizer.bin)");
  if (!std::ifstream(path, std::ios::binary)) throw Error(path + ": cannot open");
  if (path.ends_with(".json")) return std::make_unique<BpeTokenizer>(read_tokenizer_json(path));
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

// llama.cpp's SentencePiece tokenizer ("llama") merges by score with <0xXX> byte fallback, the
// algorithm llama2.c's run.c implements; its pieces spell spaces as U+2581.
static std::unique_ptr<Tokenizer> spm_from_metadata(const TokenizerMetadata& m) {
  if (m.scores.size() != m.tokens.size())
    throw Error(m.source + ": a SentencePiece tokenizer needs tokenizer.ggml.scores for every token");
  std::vector<std::string> pieces;
  pieces.reserve(m.tokens.size());
  for (const auto& t : m.tokens) {
    std::string p;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
        p += ' ';
        i += 2;
      } else {
        p += t[i];
      }
    }
    pieces.push_back(std::move(p));
  }
  return std::make_unique<Llama2cTokenizer>(std::move(pieces), m.scores, m.source);
}

std::unique_ptr<Tokenizer> tokenizer_from_metadata(const TokenizerMetadata& meta) {
  if (meta.model == "gpt2") return std::make_unique<BpeTokenizer>(bpe_vocabulary_from_metadata(meta));
  if (meta.model == "llama") return spm_from_metadata(meta);
  throw Error(meta.source + ": tokenizer model '" + meta.model +
              "' is not supported (ptq reads gpt2 byte-level BPE and llama SentencePiece)");
}

}  // namespace ptq
