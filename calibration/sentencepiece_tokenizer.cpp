#include "calibration/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include "ptq/error.h"

namespace ptq {

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::try_load(const std::string& path,
                                                                         std::string* why) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status status;
  try {
    status = sp->Load(path);
  } catch (const std::exception& e) {  // the library's file reader may throw (std::ios_failure)
    if (why) *why = e.what();
    return nullptr;
  }
  if (!status.ok()) {
    if (why) *why = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(sp), path));
}

SentencePieceTokenizer::SentencePieceTokenizer(
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp, std::string source)
    : sp_(std::move(sp)), source_(std::move(source)) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) throw Error(source_ + ": SentencePiece encode failed: " + status.ToString());
  std::vector<int32_t> out;
  out.reserve(ids.size() + 1);
  if (add_bos && bos_id() >= 0) out.push_back(bos_id());
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  // The library does not range-check ids, so a stray id must not reach it.
  for (int32_t id : ids)
    if (id < 0 || id >= vocab_size())
      throw Error(source_ + ": cannot decode token id " + std::to_string(id) +
                  ", outside the vocabulary of " + std::to_string(vocab_size()));
  std::string text;
  const auto status = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) throw Error(source_ + ": SentencePiece decode failed: " + status.ToString());
  return text;
}

TokenizerMetadata SentencePieceTokenizer::gguf_metadata() const {
  TokenizerMetadata m;
  m.source = source_;
  m.model = "llama";
  m.pre = "default";
  const int n = sp_->GetPieceSize();
  for (int id = 0; id < n; ++id) {
    m.tokens.push_back(sp_->IdToPiece(id));
    m.scores.push_back(sp_->GetScore(id));
    TokenType t = TokenType::kNormal;
    if (sp_->IsUnknown(id)) t = TokenType::kUnknown;
    else if (sp_->IsControl(id)) t = TokenType::kControl;
    else if (sp_->IsUnused(id)) t = TokenType::kUnused;
    else if (sp_->IsByte(id)) t = TokenType::kByte;
    m.token_types.push_back(int32_t(t));
  }
  m.bos_id = sp_->bos_id();
  m.eos_id = sp_->eos_id();
  m.unk_id = sp_->unk_id();
  m.pad_id = sp_->pad_id();
  m.add_bos = true;
  m.add_eos = false;
  return m;
}

int SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int SentencePieceTokenizer::bos_id() const { return sp_->bos_id(); }
int SentencePieceTokenizer::eos_id() const { return sp_->eos_id(); }

}  // namespace ptq
