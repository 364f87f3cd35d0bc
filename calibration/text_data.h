#pragma once
// Turning text files into token sequences under the evaluation and calibration protocols
// (docs/protocols.md):
//  - tinystories: documents separated by <|endoftext|>, each stripped and encoded (with BOS when
//    the tokenizer adds one), truncated to seq_len, scored as one sequence.
//  - wikitext2 / text: the whole file encoded once (a single BOS at its start when the
//    tokenizer adds one: llama2.c and SentencePiece models do, SmolLM2 does not), cut into
//    consecutive non-overlapping windows of seq_len tokens, remainder dropped; a window's first
//    token is context only.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "calibration/tokenizer.h"
#include "ptq/model.h"

namespace ptq {

enum class DataFormat { kTinyStories, kWikiText2, kText };
DataFormat parse_data_format(const std::string& name);  // throws Error listing the choices
const char* data_format_name(DataFormat f);

using TokenSeqs = std::vector<std::vector<int32_t>>;

// Splits on <|endoftext|>, strips whitespace, drops empty documents.
std::vector<std::string> split_documents(const std::string& text);

// Documents of `path` as token ids: one per document (tinystories), or one for the whole file.
// `token_file` reads pre-tokenized ids instead (one whitespace-separated list per line, each a
// document; BOS is not added).
TokenSeqs tokenize_documents(const std::string& path, DataFormat fmt, const Tokenizer* tok,
                             bool token_file);

// Evaluation sequences under the protocol. max_samples <= 0 keeps all.
TokenSeqs eval_sequences(const TokenSeqs& docs, DataFormat fmt, int seq_len, int max_samples);

// The tokenizer file for a model: `override_path` when given; "" for a GGUF file (it embeds its
// tokenizer); else, in the model's directory (or beside a .bin checkpoint), tokenizer.json when
// it is byte-level BPE, tokenizer.model, tokenizer.bin, or a tokenizer.json of another kind (so
// that loading it explains why it cannot be read); "" when none.
std::string find_model_tokenizer(const std::string& model_path, const std::string& override_path);

// The tokenizer for a model: `override_path` when given, else the one its file embeds (GGUF
// metadata), else the file find_model_tokenizer finds. Throws Error naming the model when there
// is none, and when the tokenizer has more tokens than the model's vocabulary.
std::unique_ptr<Tokenizer> open_model_tokenizer(const Model& model, const std::string& override_path);
// The same from a path (a GGUF model is opened for its metadata).
std::unique_ptr<Tokenizer> open_model_tokenizer(const std::string& model_path, int model_vocab,
                                                const std::string& override_path);

// Throws Error naming `path` and the offset of the first NUL byte or malformed UTF-8 sequence.
void check_text(const std::string& path, const std::string& text);

// The tokenizer files a checkpoint written from `model` carries: copies of the source's files, or
// for a GGUF source files made from its metadata (tokenizer.json + tokenizer_config.json for
// byte-level BPE, a llama2.c tokenizer.bin for SentencePiece).
struct TokenizerOutputFile {
  std::string name;       // in the checkpoint directory
  std::string copy_from;  // a file to copy, or "" to write `text`
  std::string text;
};
std::vector<TokenizerOutputFile> tokenizer_output_files(const Model& model, const std::string& override_path);

// The tokenizer a GGUF file written from `model` embeds: the source's own GGUF metadata, else the
// pieces of a SentencePiece model (the override, else the one beside the model). Throws Error
// naming the tokenizer when none is found or ptq cannot express its kind as GGUF metadata yet.
std::shared_ptr<const TokenizerMetadata> embeddable_tokenizer(const Model& model, const std::string& override_path);

// Parses one line of whitespace-separated ids; throws Error naming `where` on a bad token.
std::vector<int32_t> parse_token_line(const std::string& line, const std::string& where);

}  // namespace ptq
