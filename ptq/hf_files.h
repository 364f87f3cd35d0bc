#pragma once
// The files beside an HF model's config.json and weights that clients read: the tokenizer in
// every form transformers accepts, its configuration and special tokens, chat templates,
// generation defaults, and llama2.c's tokenizer.bin (which ptq reads). A checkpoint ptq writes
// carries the source's copies (calibration/text_data.h), and an output directory treats these
// names as ptq's own (formats/output_dir.h).
namespace ptq {

inline constexpr const char* kHfSidecarFiles[] = {
    "tokenizer.json",          "tokenizer_config.json", "tokenizer.model",     "special_tokens_map.json",
    "added_tokens.json",       "vocab.json",            "merges.txt",          "generation_config.json",
    "chat_template.jinja",     "chat_template.json",    "preprocessor_config.json", "tokenizer.bin"};

}  // namespace ptq
