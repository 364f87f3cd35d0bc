#pragma once
// llama2.c tokenizer.bin, encoded and decoded exactly as karpathy/llama2.c run.c does, but with
// a heap-driven merge so that whole corpora (WikiText-2, ~1.3M chars) encode in well under a
// second instead of run.c's quadratic rescans.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "calibration/tokenizer.h"

namespace ptq {

class Llama2cTokenizer final : public Tokenizer {
 public:
  // Reads `path`; throws Error naming it when it is truncated or malformed, or when
  // `expected_vocab` > 0 and the file holds a different number of tokens (the format does not
  // record its own vocabulary size, so this is the only check against the model).
  static std::unique_ptr<Llama2cTokenizer> load(const std::string& path, int expected_vocab = 0);

  // `source` names the tokenizer in error messages.
  Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::string source);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return 1; }
  int eos_id() const override { return 2; }
  std::string kind() const override { return "llama2c"; }

  const std::string& piece(int id) const { return pieces_.at(static_cast<size_t>(id)); }
  float score(int id) const { return scores_.at(static_cast<size_t>(id)); }
  int lookup(std::string_view s) const;  // -1 when `s` is not a piece
  // The tokenizer.bin bytes that load() reads back as this tokenizer.
  std::string serialize() const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::vector<int32_t> split_code_points(std::string_view text, bool add_bos) const;
  void merge_pairs(std::vector<int32_t>& ids) const;
  std::string_view decode_piece(int32_t prev, int32_t id) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> index_;
  std::string source_;
  std::string byte_pieces_;  // byte b at [b]: decode's view of a <0xXX> token
};

}  // namespace ptq
