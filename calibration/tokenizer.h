#pragma once
// Tokenizers for the text that calibration and evaluation read.
//  - llama2.c tokenizer.bin: max_token_length (i32), then per token: score (f32), length (i32),
//    bytes. Encoded as llama2.c's run.c does: BOS optional, a dummy-prefix " " token when the
//    text is non-empty, UTF-8 code points looked up directly with byte fallback (<0xXX> = byte+3),
//    then greedy merges of the adjacent pair whose merged string has the highest score.
//  - SentencePiece .model through libsentencepiece.
//  - byte-level BPE (GPT-2 style: Llama 3, Qwen 2.5, SmolLM, Mistral Tekken) from an HF
//    tokenizer.json or from GGUF metadata (calibration/bpe_tokenizer.h).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ptq/tokenizer_metadata.h"

namespace ptq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual std::string kind() const = 0;  // "llama2c", "sentencepiece" or "bpe"
  // The model's rule for the start of a text: llama2.c and SentencePiece models put BOS first;
  // a byte-level BPE tokenizer says so itself (SmolLM2: no BOS, Llama 3: BOS).
  virtual bool adds_bos() const { return true; }
  // Like encode, but control tokens written out in the text (e.g. "<|im_start|>") become their
  // ids; encode leaves them as plain text (llama-tokenize --no-parse-special).
  virtual std::vector<int32_t> encode_with_special(std::string_view text, bool add_bos) const {
    return encode(text, add_bos);
  }
};

// Chooses by content: an HF tokenizer.json (a file ending in .json), a SentencePiece model
// proto, else a llama2.c tokenizer.bin (checked against `expected_vocab` when > 0). Throws Error
// naming the file on anything malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, int expected_vocab = 0);

// The tokenizer a model file embeds (GGUF metadata): byte-level BPE for tokenizer model "gpt2",
// llama.cpp's SentencePiece algorithm (= llama2.c's) for "llama". Error naming its file otherwise.
std::unique_ptr<Tokenizer> tokenizer_from_metadata(const TokenizerMetadata& meta);

}  // namespace ptq
