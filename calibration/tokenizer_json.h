#pragma once
// Hugging Face tokenizers' tokenizer.json for byte-level BPE models (Llama 3, Qwen 2.5, SmolLM,
// Mistral): reading it into a BpeVocabulary, and writing one from GGUF metadata so that a
// checkpoint ptq writes from a GGUF source carries its tokenizer.
//
// Read: model {type BPE, vocab {token: id}, merges ["a b"] or [["a", "b"]], ignore_merges,
// unk_token}; added_tokens [{id, content, special, lstrip, rstrip, single_word}]; normalizer
// null or NFC (taken as identity: ptq does not normalise, so text must already be NFC);
// pre_tokenizer Sequence / Split {Regex | String, behavior, invert} / Digits {individual_digits} /
// ByteLevel {add_prefix_space, use_regex} (a ByteLevel step is required: it is what makes the
// tokenizer byte-level); post_processor TemplateProcessing (a leading special token is BOS, a
// trailing one EOS), ByteLevel, or a Sequence of those. A tokenizer_config.json beside the file
// gives bos/eos token names, and for tokenizer_class Llama* its add_bos_token / add_eos_token
// override the template, as transformers' LlamaTokenizerFast does. Anything else is refused with
// an Error naming the file and the field.
#include <string>

#include "calibration/bpe_tokenizer.h"
#include "ptq/tokenizer_metadata.h"

namespace ptq {

BpeVocabulary read_tokenizer_json(const std::string& path);

// True when `path` parses as JSON and has a ByteLevel pre-tokenizer (the tokenizer.json of a
// SentencePiece model has Metaspace instead, and its tokenizer.model is the file to read).
bool is_byte_level_tokenizer_json(const std::string& path);

// tokenizer.json text (HF tokenizers format) for a GGUF "gpt2" tokenizer: the vocabulary and
// merges, control/user tokens as added tokens, llama.cpp's pre-tokenizer regexes as Split steps
// then ByteLevel, BOS/EOS as a TemplateProcessing post-processor. Deterministic.
std::string tokenizer_json_from_metadata(const TokenizerMetadata& meta);
// The matching tokenizer_config.json (bos/eos/unk/pad names, add_bos_token, chat_template).
std::string tokenizer_config_from_metadata(const TokenizerMetadata& meta);

}  // namespace ptq
