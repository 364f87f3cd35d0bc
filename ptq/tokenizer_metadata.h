#pragma once
// A tokenizer as a model file embeds it (GGUF `tokenizer.ggml.*` keys), in a plain struct so
// the core Model can carry it from formats/ to calibration/ (which builds the tokenizer) without
// either depending on the other.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ptq {

// llama.cpp's token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

struct TokenizerMetadata {
  std::string source;  // the file it came from, for messages
  std::string model;   // tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
  std::string pre;     // tokenizer.ggml.pre: the pre-tokenizer's name ("smollm", "llama-bpe", ...)
  std::vector<std::string> tokens;   // by id
  std::vector<float> scores;         // by id; empty when the file has none
  std::vector<int32_t> token_types;  // by id (TokenType); empty when the file has none
  std::vector<std::string> merges;   // "left right", by rank
  int bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;  // -1: not set
  std::optional<bool> add_bos, add_eos;                    // absent: the tokenizer model's default
  std::string chat_template;
};

}  // namespace ptq
