#include "calibration/text_data.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "calibration/llama2c_tokenizer.h"
#include "calibration/sentencepiece_tokenizer.h"
#include "calibration/tokenizer_json.h"
#include "ptq/error.h"
#include "ptq/hf_files.h"
#include "ptq/fs.h"

namespace ptq {

DataFormat parse_data_format(const std::string& name) {
  if (name == "tinystories") return DataFormat::kTinyStories;
  if (name == "wikitext2") return DataFormat::kWikiText2;
  if (name == "text") return DataFormat::kText;
  throw Error("unknown data format '" + name + "' (expected tinystories, wikitext2 or text)");
}

const char* data_format_name(DataFormat f) {
  switch (f) {
    case DataFormat::kTinyStories: return "tinystories";
    case DataFormat::kWikiText2: return "wikitext2";
    case DataFormat::kText: return "text";
  }
  return "?";
}

static std::string strip(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split_documents(const std::string& text) {
  static const std::string kSep = "<|endoftext|>";
  std::vector<std::string> docs;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t next = text.find(kSep, pos);
    std::string doc = strip(text.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (!doc.empty()) docs.push_back(std::move(doc));
    if (next == std::string::npos) break;
    pos = next + kSep.size();
  }
  return docs;
}

std::vector<int32_t> parse_token_line(const std::string& line, const std::string& where) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    long v = std::strtol(word.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v > INT32_MAX)
      throw Error(where + ": expected a non-negative token id, found '" + word + "'");
    ids.push_back(int32_t(v));
  }
  return ids;
}

// Calibration and evaluation text must be text: a binary file would tokenize into byte-fallback
// noise without a word. Checked for NUL bytes and well-formed UTF-8 (no overlong forms or
// surrogates), naming the first bad byte.
void check_text(const std::string& path, const std::string& text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool ok = len > 0 && c != 0 && i + len <= n && !(c == 0xC0 || c == 0xC1) && c <= 0xF4;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len == 3) ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
    if (ok && len == 4) ok = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
    if (!ok) {
      char byte[8];
      std::snprintf(byte, sizeof byte, "0x%02X", c);
      throw Error(path + ": not UTF-8 text (" + (c == 0 ? std::string("a NUL byte") : "byte " + std::string(byte)) +
                  " at offset " + std::to_string(i) + "); calibration and evaluation data must be text "
                  "(pre-tokenized ids go through --tokens / tokens: true)");
    }
    i += len;
  }
}

static TokenSeqs read_token_file(const std::string& path) {
  require_file(path, "a token file");
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open token file");
  TokenSeqs docs;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    auto ids = parse_token_line(line, path + ":" + std::to_string(n));
    if (!ids.empty()) docs.push_back(std::move(ids));
  }
  return docs;
}

TokenSeqs tokenize_documents(const std::string& path, DataFormat fmt, const Tokenizer* tok,
                             bool token_file) {
  if (token_file) return read_token_file(path);
  PTQ_ASSERT(tok != nullptr, "text data needs a tokenizer");
  std::string text = read_text_file(path);
  check_text(path, text);
  if (strip(text).empty()) throw Error(path + ": holds no text (the file is empty or only whitespace)");
  TokenSeqs docs;
  if (fmt == DataFormat::kTinyStories) {
    for (const auto& d : split_documents(text)) docs.push_back(tok->encode(d, tok->adds_bos()));
  } else {
    docs.push_back(tok->encode(text, tok->adds_bos()));
  }
  return docs;
}

namespace {

namespace fs = std::filesystem;

bool starts_with_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

// As transformers would: tokenizer.json when it is byte-level BPE, else the SentencePiece
// tokenizer.model, else llama2.c's tokenizer.bin, else a tokenizer.json ptq will explain.
std::string tokenizer_file_in(const fs::path& dir) {
  std::error_code ec;
  const fs::path json = dir / "tokenizer.json";
  const bool has_json = fs::is_regular_file(json, ec);
  if (has_json && is_byte_level_tokenizer_json(json.string())) return json.string();
  for (const char* name : {"tokenizer.model", "tokenizer.bin"})
    if (fs::exists(dir / name, ec)) return (dir / name).string();
  return has_json ? json.string() : "";
}

fs::path model_dir(const std::string& model_path) {
  std::error_code ec;
  return fs::is_directory(model_path, ec) ? fs::path(model_path) : fs::path(model_path).parent_path();
}

void check_vocab(const Tokenizer& tok, const std::string& what, int model_vocab) {
  if (tok.vocab_size() > model_vocab)
    throw Error(what + ": tokenizer has " + std::to_string(tok.vocab_size()) +
                " tokens but the model's vocabulary is " + std::to_string(model_vocab));
}

}  // namespace

std::string find_model_tokenizer(const std::string& model_path, const std::string& override_path) {
  if (!override_path.empty()) return override_path;
  if (starts_with_gguf_magic(model_path)) return "";  // the GGUF's own tokenizer comes first
  return tokenizer_file_in(model_dir(model_path));
}

std::unique_ptr<Tokenizer> open_model_tokenizer(const Model& model, const std::string& override_path) {
  const int vocab = model.config().vocab_size;
  if (override_path.empty() && model.tokenizer_metadata()) {
    auto tok = tokenizer_from_metadata(*model.tokenizer_metadata());
    check_vocab(*tok, model.path(), vocab);
    return tok;
  }
  const std::string path = override_path.empty() ? tokenizer_file_in(model_dir(model.path())) : override_path;
  if (path.empty())
    throw Error(model.path() + ": no tokenizer.json, tokenizer.model or tokenizer.bin beside the model; pass "
                               "--tokenizer FILE (model.tokenizer in a job) or pre-tokenized --tokens FILE");
  auto tok = load_tokenizer(path);
  check_vocab(*tok, path, vocab);
  return tok;
}

std::unique_ptr<Tokenizer> open_model_tokenizer(const std::string& model_path, int model_vocab,
                                                const std::string& override_path) {
  if (override_path.empty() && starts_with_gguf_magic(model_path)) {
    const Model model = Model::open(model_path);
    return open_model_tokenizer(model, override_path);
  }
  const std::string path = find_model_tokenizer(model_path, override_path);
  if (path.empty())
    throw Error(model_path + ": no tokenizer.json, tokenizer.model or tokenizer.bin beside the model; pass "
                             "--tokenizer FILE (model.tokenizer in a job) or pre-tokenized --tokens FILE");
  auto tok = load_tokenizer(path);
  check_vocab(*tok, path, model_vocab);
  return tok;
}

namespace {

// The canonical checkpoint name of a tokenizer file, after loading it: a checkpoint must not
// carry a tokenizer ptq cannot read back.
std::string checked_output_name(const std::string& tokenizer_path) {
  const auto tok = load_tokenizer(tokenizer_path);
  if (tokenizer_path.ends_with(".json")) return "tokenizer.json";
  return tok->kind() == "sentencepiece" ? "tokenizer.model" : "tokenizer.bin";
}

}  // namespace

std::vector<TokenizerOutputFile> tokenizer_output_files(const Model& model, const std::string& override_path) {
  std::vector<TokenizerOutputFile> out;
  auto has = [&](const std::string& name) {
    return std::any_of(out.begin(), out.end(), [&](const TokenizerOutputFile& f) { return f.name == name; });
  };
  // The override is the tokenizer the user says the model uses: it takes its canonical name, and
  // a source file of that name is not copied.
  if (!override_path.empty()) {
    out.push_back({checked_output_name(override_path), override_path, ""});
  }
  std::error_code ec;
  if (fs::is_directory(model.path(), ec)) {
    for (const char* name : kHfSidecarFiles) {
      const fs::path p = fs::path(model.path()) / name;
      if (!has(name) && fs::is_regular_file(p, ec)) out.push_back({name, p.string(), ""});
    }
    for (const auto& f : out)
      if (f.name == "tokenizer.json" && f.copy_from != override_path && is_byte_level_tokenizer_json(f.copy_from))
        load_tokenizer(f.copy_from);  // the one ptq would use: it must read back
    return out;
  }
  const std::string path = find_model_tokenizer(model.path(), "");
  if (!path.empty()) {
    if (const std::string name = checked_output_name(path); !has(name)) out.push_back({name, path, ""});
    if (path.ends_with(".json")) {
      const fs::path cfg = fs::path(path).parent_path() / "tokenizer_config.json";
      if (fs::is_regular_file(cfg, ec)) out.push_back({"tokenizer_config.json", cfg.string(), ""});
    }
    return out;
  }
  if (!override_path.empty()) return out;
  if (const auto& meta = model.tokenizer_metadata()) {
    if (meta->model == "gpt2") {
      out.push_back({"tokenizer.json", "", tokenizer_json_from_metadata(*meta)});
      out.push_back({"tokenizer_config.json", "", tokenizer_config_from_metadata(*meta)});
    } else if (meta->model == "llama") {
      const auto tok = tokenizer_from_metadata(*meta);
      out.push_back({"tokenizer.bin", "", static_cast<const Llama2cTokenizer&>(*tok).serialize()});
    }
  }
  return out;
}

std::shared_ptr<const TokenizerMetadata> embeddable_tokenizer(const Model& model, const std::string& override_path) {
  if (override_path.empty() && model.tokenizer_metadata()) return model.tokenizer_metadata();
  const std::string path = find_model_tokenizer(model.path(), override_path);
  if (path.empty())
    throw Error(model.path() + ": a GGUF file embeds its tokenizer, and there is no tokenizer.model beside the "
                               "model; pass --tokenizer FILE");
  std::string why;
  if (auto sp = SentencePieceTokenizer::try_load(path, &why))
    return std::make_shared<const TokenizerMetadata>(sp->gguf_metadata());
  throw Error(path + ": ptq embeds SentencePiece models (tokenizer.model) and tokenizers read from GGUF files "
                     "in GGUF output; this is a " + load_tokenizer(path)->kind() + " tokenizer");
}

TokenSeqs eval_sequences(const TokenSeqs& docs, DataFormat fmt, int seq_len, int max_samples) {
  PTQ_ASSERT(seq_len >= 2);
  const size_t limit = max_samples > 0 ? size_t(max_samples) : SIZE_MAX;
  TokenSeqs out;
  if (fmt == DataFormat::kTinyStories) {
    for (const auto& d : docs) {
      if (out.size() == limit) break;
      if (d.size() < 2) continue;
      out.emplace_back(d.begin(), d.begin() + std::min(d.size(), size_t(seq_len)));
    }
    return out;
  }
  std::vector<int32_t> stream;
  for (const auto& d : docs) stream.insert(stream.end(), d.begin(), d.end());
  for (size_t b = 0; b + size_t(seq_len) <= stream.size() && out.size() < limit; b += seq_len)
    out.emplace_back(stream.begin() + b, stream.begin() + b + seq_len);
  return out;
}

}  // namespace ptq
