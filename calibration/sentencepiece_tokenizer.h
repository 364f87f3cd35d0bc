#pragma once
// SentencePiece .model files through libsentencepiece, so that normalisation, byte fallback and
// whitespace handling match the models' own training-time tokenizer exactly.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "calibration/tokenizer.h"
#include "ptq/tokenizer_metadata.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ptq {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // nullptr when `path` is not a SentencePiece model proto; `why` then gets the library's reason
  // (load_tokenizer falls back to other formats, so this is not an error by itself).
  static std::unique_ptr<SentencePieceTokenizer> try_load(const std::string& path,
                                                          std::string* why = nullptr);
  ~SentencePieceTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const override;
  int bos_id() const override;
  int eos_id() const override;
  std::string kind() const override { return "sentencepiece"; }
  // The model as GGUF tokenizer metadata (llama.cpp's "llama" vocabulary): every piece with its
  // score and type, the special ids, BOS added and EOS not (SentencePiece's Llama convention).
  TokenizerMetadata gguf_metadata() const;

 private:
  SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp,
                         std::string source);

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string source_;
};

}  // namespace ptq
