#pragma once
// Byte-level BPE (GPT-2's scheme, used by Llama 3, Qwen 2.5, SmolLM, Mistral Tekken), encoded as
// HF tokenizers and llama.cpp do:
//  1. added tokens are cut out of the text first (leftmost, longest on ties; control tokens only
//     when parsing special tokens, user-defined ones always);
//  2. the rest goes through the pre-tokenizer steps in order (regex splits, HF's
//     SplitDelimiterBehavior, PCRE2 with Unicode properties and JIT);
//  3. each piece's UTF-8 bytes map to GPT-2's printable byte alphabet and are merged pair by
//     pair, lowest merge rank first, leftmost on ties (ignore_merges: a piece that is itself a
//     token is taken whole, as Llama 3 does);
//  4. BOS / EOS are added by the tokenizer's own rule.
// The vocabulary comes from an HF tokenizer.json (calibration/tokenizer_json.h) or from GGUF
// metadata (bpe_vocabulary_from_metadata).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "calibration/tokenizer.h"
#include "ptq/tokenizer_metadata.h"

namespace ptq {

// HF tokenizers' SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kRegex, kLiteral, kPrefixSpace };
  Kind kind = Kind::kRegex;
  std::string pattern;  // kRegex: a PCRE2 pattern; kLiteral: the exact text
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;  // split on what does not match
};

struct AddedToken {
  int32_t id = -1;
  std::string content;  // raw text, not byte-level encoded
  bool special = true;  // control token: matched only when parsing special tokens
  bool lstrip = false, rstrip = false, single_word = false;
};

struct BpeVocabulary {
  std::string source;               // the file it came from, for messages
  std::vector<std::string> tokens;  // by id, in GPT-2 byte-alphabet form; "" = unassigned id
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
  std::vector<AddedToken> added;
  std::vector<PreTokenizerStep> pre;
  bool ignore_merges = false;
  int bos_id = -1, eos_id = -1, unk_id = -1;
  bool add_bos = false, add_eos = false;
};

// GPT-2's pattern as HF's ByteLevel pre-tokenizer runs it.
extern const char* const kGpt2Pattern;

// llama.cpp's pre-tokenizer for a GGUF `tokenizer.ggml.pre` name (src/llama-vocab.cpp), with the
// ignore_merges and default add_bos it implies. Throws Error naming `source` for names ptq lacks.
struct GgufPreTokenizer {
  std::vector<PreTokenizerStep> steps;
  bool ignore_merges = false;
  bool add_bos = false;
};
GgufPreTokenizer gguf_pre_tokenizer(const std::string& name, const std::string& source);
// Names gguf_pre_tokenizer knows, for messages and tests.
std::vector<std::string> gguf_pre_tokenizer_names();

// A GGUF tokenizer of model "gpt2" as a vocabulary; Error naming its file when malformed.
BpeVocabulary bpe_vocabulary_from_metadata(const TokenizerMetadata& meta);

// GPT-2's byte alphabet: the code point byte b is written as in token strings.
uint32_t byte_to_unicode(uint8_t b);

class BpeTokenizer final : public Tokenizer {
 public:
  // Validates the vocabulary (merge parts and results are tokens, added ids are in range,
  // special ids exist, regexes compile); throws Error naming vocab.source.
  explicit BpeTokenizer(BpeVocabulary vocab);
  ~BpeTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::vector<int32_t> encode_with_special(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const override;
  int bos_id() const override;
  int eos_id() const override;
  std::string kind() const override { return "bpe"; }
  bool adds_bos() const override;
  bool adds_eos() const;

  const BpeVocabulary& vocabulary() const;
  // The pieces of `text` after the pre-tokenizer (before byte mapping), for tests.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

 private:
  struct Impl;
  std::vector<int32_t> encode_impl(std::string_view text, bool add_bos, bool parse_special) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ptq
