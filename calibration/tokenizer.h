#pragma once
// Tokenizers for the text that calibration and evaluation read.
//  - llama2.c tokenizer.bin: max_token_length (i32), then per token: score (f32), length (i32),
//    bytes. Encoded as llama2.c's run.c does: BOS optional, a dummy-prefix " " token when the
//    text is non-empty, UTF-8 code points looked up directly with byte fallback (<0xXX> = byte+3),
//    then greedy merges of the adjacent pair whose merged string has the highest score.
//  - SentencePiece .model through libsentencepiece.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ptq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual std::string kind() const = 0;  // "llama2c" or "sentencepiece"
};

// Chooses by content: a SentencePiece model proto, else a llama2.c tokenizer.bin (checked
// against `expected_vocab` when > 0). Throws Error naming the file on anything malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, int expected_vocab = 0);

}  // namespace ptq
