#include "calibration/bpe_tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <queue>
#include <unordered_map>

#include "ptq/error.h"

namespace ptq {

// HF tokenizers' ByteLevel regex (GPT-2's, with the final `\s+` alternative).
const char* const kGpt2Pattern = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

namespace {

// llama.cpp's spellings (src/llama-vocab.cpp, llm_tokenizer_bpe); it applies each in turn to
// the pieces the previous one left, keeping matches and gaps alike (HF's Isolated behaviour).
constexpr const char* kLlamaGpt2 = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
constexpr const char* kLlama3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kQwen2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kTekken =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

struct PreFamily {
  std::vector<const char*> names;
  std::vector<const char*> regexes;
  bool ignore_merges, add_bos;
};

const std::vector<PreFamily>& pre_families() {
  static const std::vector<PreFamily> kFamilies = {
      {{"default"},
       {R"re([\p{P}\$\+<=>\^~\|]+)re", kLlamaGpt2, R"re(\p{N}+)re", "[0-9][0-9][0-9]"},
       false, false},
      {{"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4", "trillion", "granite-docling"},
       {kLlamaGpt2}, false, false},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
       {R"re(\p{N})re", kLlamaGpt2}, false, false},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
       {kLlama3}, true, true},
      {{"dbrx", "smaug-bpe"}, {kLlama3}, false, false},
      {{"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan"}, {kQwen2}, false, false},
      {{"falcon"},
       {R"re([\p{P}\$\+<=>\^~\|`]+)re", kLlamaGpt2, "[0-9][0-9][0-9]"},
       false, false},
      {{"tekken"}, {kTekken}, true, true},
  };
  return kFamilies;
}

size_t utf8_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;  // a stray continuation or invalid byte stands alone
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// The code point at s[i] (advancing i), or -1 for an invalid sequence (i advances one byte).
int64_t next_code_point(std::string_view s, size_t& i) {
  const uint8_t b = uint8_t(s[i]);
  const size_t n = utf8_len(b);
  if (n == 1 || i + n > s.size()) {
    ++i;
    return b < 0x80 ? b : -1;
  }
  uint32_t cp = b & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; ++k) {
    const uint8_t c = uint8_t(s[i + k]);
    if ((c & 0xC0) != 0x80) {
      ++i;
      return -1;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  i += n;
  return cp;
}

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& source) {
    int err = 0;
    PCRE2_SIZE at = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw Error(source + ": pre-tokenizer regex '" + pattern + "' does not compile (at offset " +
                  std::to_string(at) + "): " + reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // without JIT, pcre2_match interprets
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Match buffers and a JIT stack, made once per text rather than once per piece.
  class Matcher {
   public:
    explicit Matcher(const Regex& re)
        : code_(re.code_),
          md_(pcre2_match_data_create_from_pattern(code_, nullptr)),
          mc_(pcre2_match_context_create(nullptr)),
          stack_(pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr)) {
      if (stack_) pcre2_jit_stack_assign(mc_, nullptr, stack_);
    }
    ~Matcher() {
      pcre2_jit_stack_free(stack_);
      pcre2_match_context_free(mc_);
      pcre2_match_data_free(md_);
    }
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;

    // Every match of `s`, empty ones included, as byte ranges.
    void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
      out.clear();
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
      size_t off = 0;
      while (off <= s.size()) {
        const int rc = pcre2_match(code_, subject, s.size(), off, 0, md_, mc_);
        if (rc == PCRE2_ERROR_NOMATCH) return;
        if (rc < 0) {
          PCRE2_UCHAR msg[256];
          pcre2_get_error_message(rc, msg, sizeof msg);
          throw Error(std::string("pre-tokenizer regex failed on the input: ") + reinterpret_cast<const char*>(msg));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md_);
        const size_t b = ov[0], e = ov[1];
        out.emplace_back(b, e);
        if (e > b) {
          off = e;
        } else {
          if (e >= s.size()) return;
          off = e + std::min(utf8_len(uint8_t(s[e])), s.size() - e);
        }
      }
    }

   private:
    const pcre2_code* code_;
    pcre2_match_data* md_;
    pcre2_match_context* mc_;
    pcre2_jit_stack* stack_;
  };

 private:
  pcre2_code* code_ = nullptr;
};

struct Segment {
  size_t begin, end;
  bool is_match;
};

// HF tokenizers' Split: matches and gaps, then the behaviour's grouping; empty pieces dropped.
void split_by_behavior(std::string_view piece, const std::vector<std::pair<size_t, size_t>>& matches,
                       const PreTokenizerStep& step, std::vector<std::string>& out) {
  std::vector<Segment> segs;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) segs.push_back({prev, b, false});
    segs.push_back({b, e, true});
    prev = e;
  }
  if (prev != piece.size()) segs.push_back({prev, piece.size(), false});
  if (step.invert)
    for (auto& s : segs) s.is_match = !s.is_match;
  std::vector<Segment> groups;
  bool previous_match = false;
  switch (step.behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& s : segs)
        if (!s.is_match) groups.push_back(s);
      break;
    case SplitBehavior::kIsolated:
      groups = segs;
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& s : segs) {
        if (s.is_match && !previous_match && !groups.empty()) groups.back().end = s.end;
        else groups.push_back(s);
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !groups.empty()) groups.back().begin = it->begin;
        else groups.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(groups.begin(), groups.end());
      break;
    case SplitBehavior::kContiguous:
      for (const auto& s : segs) {
        if (s.is_match == previous_match && !groups.empty()) groups.back().end = s.end;
        else groups.push_back(s);
        previous_match = s.is_match;
      }
      break;
  }
  for (const auto& g : groups)
    if (g.end > g.begin) out.emplace_back(piece.substr(g.begin, g.end - g.begin));
}

std::vector<std::pair<size_t, size_t>> literal_matches(std::string_view s, const std::string& lit) {
  std::vector<std::pair<size_t, size_t>> out;
  if (lit.empty()) return out;
  for (size_t p = s.find(lit); p != std::string_view::npos; p = s.find(lit, p + lit.size()))
    out.emplace_back(p, p + lit.size());
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (uint8_t(c) & 0x80);
}

}  // namespace

uint32_t byte_to_unicode(uint8_t b) {
  // Printable Latin-1 bytes stand for themselves; the other 68 take code points 256.. in order.
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
  uint32_t n = 0;
  for (int c = 0; c < b; ++c)
    if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) ++n;
  return 256 + n;
}

std::vector<std::string> gguf_pre_tokenizer_names() {
  std::vector<std::string> out;
  for (const auto& f : pre_families())
    for (const char* n : f.names) out.emplace_back(n);
  return out;
}

GgufPreTokenizer gguf_pre_tokenizer(const std::string& name, const std::string& source) {
  for (const auto& f : pre_families())
    for (const char* n : f.names)
      if (name == n) {
        GgufPreTokenizer p;
        for (const char* re : f.regexes) p.steps.push_back({PreTokenizerStep::Kind::kRegex, re, SplitBehavior::kIsolated, false});
        p.ignore_merges = f.ignore_merges;
        p.add_bos = f.add_bos;
        return p;
      }
  std::string known;
  for (const auto& n : gguf_pre_tokenizer_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(source + ": unknown pre-tokenizer '" + name + "' (tokenizer.ggml.pre; ptq knows " + known + ")");
}

BpeVocabulary bpe_vocabulary_from_metadata(const TokenizerMetadata& m) {
  BpeVocabulary v;
  v.source = m.source;
  v.tokens = m.tokens;
  v.merges.reserve(m.merges.size());
  for (size_t r = 0; r < m.merges.size(); ++r) {
    const std::string& s = m.merges[r];
    const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos)
      throw Error(m.source + ": tokenizer.ggml.merges entry " + std::to_string(r) + " '" + s +
                  "' is not two tokens separated by a space");
    v.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
  }
  for (size_t id = 0; id < m.token_types.size(); ++id) {
    const auto t = TokenType(m.token_types[id]);
    if (t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUserDefined)
      v.added.push_back({int32_t(id), m.tokens[id], t != TokenType::kUserDefined});
  }
  const GgufPreTokenizer pre = gguf_pre_tokenizer(m.pre, m.source);
  v.pre = pre.steps;
  v.ignore_merges = pre.ignore_merges;
  v.add_bos = m.add_bos.value_or(pre.add_bos);
  v.add_eos = m.add_eos.value_or(false);
  v.bos_id = m.bos_id;
  v.eos_id = m.eos_id;
  v.unk_id = m.unk_id;
  return v;
}

struct BpeTokenizer::Impl {
  BpeVocabulary vocab;
  std::unordered_map<std::string, int32_t> token_to_id;
  std::unordered_map<uint64_t, int32_t> pair_rank;  // (left id << 32 | right id) -> rank
  std::vector<int32_t> merge_result;                 // by rank
  int32_t byte_id[256];
  int16_t unicode_to_byte[324];
  std::vector<std::unique_ptr<Regex>> regexes;  // by pre step; nullptr for non-regex steps
  std::vector<bool> is_added;                   // by id
  std::vector<const AddedToken*> always, with_special;  // the added tokens each mode matches

  int32_t id_of(const std::string& s) const {
    auto it = token_to_id.find(s);
    return it == token_to_id.end() ? -1 : it->second;
  }
  int32_t rank_of(int32_t a, int32_t b) const {
    if (a < 0 || b < 0) return -1;
    auto it = pair_rank.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    return it == pair_rank.end() ? -1 : it->second;
  }

  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  std::vector<std::string> pre_tokenize(std::string_view text) const;
};

BpeTokenizer::BpeTokenizer(BpeVocabulary vocab) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.vocab = std::move(vocab);
  const BpeVocabulary& v = m.vocab;
  const std::string& src = v.source;
  const int64_t n = int64_t(v.tokens.size());
  if (n == 0) throw Error(src + ": the tokenizer has no tokens");
  if (n > INT32_MAX) throw Error(src + ": too many tokens");
  m.token_to_id.reserve(size_t(n));
  for (int64_t id = 0; id < n; ++id)
    if (!v.tokens[id].empty()) m.token_to_id.emplace(v.tokens[id], int32_t(id));
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(byte_to_unicode(uint8_t(b)), s);
    m.byte_id[b] = m.id_of(s);
  }
  std::fill(std::begin(m.unicode_to_byte), std::end(m.unicode_to_byte), int16_t(-1));
  for (int b = 0; b < 256; ++b) m.unicode_to_byte[byte_to_unicode(uint8_t(b))] = int16_t(b);

  m.merge_result.resize(v.merges.size());
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const auto& [a, b] = v.merges[r];
    const int32_t ia = m.id_of(a), ib = m.id_of(b), ir = m.id_of(a + b);
    for (const auto& [part, id] : {std::pair{a, ia}, std::pair{b, ib}, std::pair{a + b, ir}})
      if (id < 0)
        throw Error(src + ": merge " + std::to_string(r) + " '" + a + " " + b + "' needs '" + part +
                    "', which is not in the vocabulary");
    m.pair_rank.emplace((uint64_t(uint32_t(ia)) << 32) | uint32_t(ib), int32_t(r));  // the first rank wins
    m.merge_result[r] = ir;
  }

  m.is_added.assign(size_t(n), false);
  for (const auto& t : v.added) {
    if (t.id < 0 || t.id >= n)
      throw Error(src + ": added token '" + t.content + "' has id " + std::to_string(t.id) + ", outside [0, " +
                  std::to_string(n) + ")");
    if (t.content.empty()) throw Error(src + ": added token " + std::to_string(t.id) + " is empty");
    m.is_added[size_t(t.id)] = true;
    m.with_special.push_back(&t);
    if (!t.special) m.always.push_back(&t);
  }
  auto check_id = [&](int id, const char* what) {
    if (id >= n)
      throw Error(src + ": " + what + " token id " + std::to_string(id) + " is outside the vocabulary of " +
                  std::to_string(n));
  };
  check_id(v.bos_id, "BOS");
  check_id(v.eos_id, "EOS");
  check_id(v.unk_id, "unknown");
  if (v.add_bos && v.bos_id < 0) throw Error(src + ": the tokenizer adds BOS but names no BOS token");
  if (v.add_eos && v.eos_id < 0) throw Error(src + ": the tokenizer adds EOS but names no EOS token");
  for (const auto& step : v.pre)
    m.regexes.push_back(step.kind == PreTokenizerStep::Kind::kRegex ? std::make_unique<Regex>(step.pattern, src)
                                                                     : nullptr);
}

BpeTokenizer::~BpeTokenizer() = default;

std::vector<std::string> BpeTokenizer::Impl::pre_tokenize(std::string_view text) const {
  std::vector<std::string> pieces{std::string(text)}, next;
  std::vector<std::pair<size_t, size_t>> matches;
  std::vector<std::unique_ptr<Regex::Matcher>> matchers;
  for (const auto& re : regexes) matchers.push_back(re ? std::make_unique<Regex::Matcher>(*re) : nullptr);
  for (size_t k = 0; k < vocab.pre.size(); ++k) {
    const PreTokenizerStep& step = vocab.pre[k];
    next.clear();
    for (const auto& p : pieces) {
      if (step.kind == PreTokenizerStep::Kind::kPrefixSpace) {
        next.push_back(p.empty() || p[0] == ' ' ? p : " " + p);
        continue;
      }
      if (step.kind == PreTokenizerStep::Kind::kRegex) {
        matchers[k]->find_all(p, matches);
      } else {
        matches = literal_matches(p, step.pattern);
      }
      split_by_behavior(p, matches, step, next);
    }
    pieces.swap(next);
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(), [](const std::string& s) { return s.empty(); }),
               pieces.end());
  return pieces;
}

void BpeTokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  if (vocab.ignore_merges) {
    std::string enc;
    for (char c : piece) append_utf8(byte_to_unicode(uint8_t(c)), enc);
    if (int32_t id = id_of(enc); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const int n = int(piece.size());
  const size_t len = piece.size();
  std::vector<int32_t> ids(len), next(len), prev(len);
  std::vector<bool> dead(len, false);
  for (int i = 0; i < n; ++i) {
    ids[size_t(i)] = byte_id[uint8_t(piece[size_t(i)])];
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    prev[size_t(i)] = i - 1;
  }
  struct Candidate {
    int32_t rank, left, right, left_id, right_id;
  };
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  auto push = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const int32_t rank = rank_of(ids[size_t(l)], ids[size_t(r)]);
    if (rank >= 0) queue.push({rank, l, r, ids[size_t(l)], ids[size_t(r)]});
  };
  for (int i = 0; i + 1 < n; ++i) push(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const size_t l = size_t(c.left), r = size_t(c.right);
    if (dead[l] || dead[r] || next[l] != c.right || ids[l] != c.left_id || ids[r] != c.right_id) continue;
    ids[l] = merge_result[size_t(c.rank)];
    dead[r] = true;
    next[l] = next[r];
    if (next[l] >= 0) prev[size_t(next[l])] = c.left;
    push(prev[l], c.left);
    push(c.left, next[l]);
  }
  for (int i = 0; i >= 0 && i < n; i = next[size_t(i)]) {
    const int32_t id = ids[size_t(i)];
    if (id >= 0) out.push_back(id);
    else if (vocab.unk_id >= 0) out.push_back(vocab.unk_id);
  }
}

std::vector<int32_t> BpeTokenizer::encode_impl(std::string_view text, bool add_bos, bool parse_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  if (add_bos && m.vocab.bos_id >= 0) out.push_back(m.vocab.bos_id);
  std::unordered_map<std::string, std::vector<int32_t>> cache;  // pieces repeat a lot in prose
  auto encode_text = [&](std::string_view seg) {
    if (seg.empty()) return;
    for (const auto& piece : m.pre_tokenize(seg)) {
      auto it = cache.find(piece);
      if (it == cache.end()) {
        std::vector<int32_t> ids;
        m.bpe(piece, ids);
        it = cache.emplace(piece, std::move(ids)).first;
      }
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
  };
  const std::vector<const AddedToken*>& added = parse_special ? m.with_special : m.always;
  // Added tokens first: the leftmost occurrence wins, the longest on ties.
  std::vector<size_t> next_at(added.size(), 0);
  std::vector<bool> fresh(added.size(), false);
  size_t pos = 0, seg_begin = 0;
  while (!added.empty()) {
    size_t best = std::string_view::npos;
    const AddedToken* tok = nullptr;
    for (size_t k = 0; k < added.size(); ++k) {
      if (!fresh[k] || next_at[k] < pos) {
        next_at[k] = text.find(added[k]->content, pos);
        fresh[k] = true;
      }
      if (next_at[k] == std::string_view::npos) continue;
      if (next_at[k] < best || (next_at[k] == best && added[k]->content.size() > tok->content.size())) {
        best = next_at[k];
        tok = added[k];
      }
    }
    if (!tok) break;
    size_t begin = best, end = best + tok->content.size();
    if (tok->single_word && ((begin > 0 && is_word_char(text[begin - 1])) || (end < text.size() && is_word_char(text[end])))) {
      pos = best + 1;  // not a whole word here; look further
      continue;
    }
    if (tok->lstrip)
      while (begin > seg_begin && is_space(text[begin - 1])) --begin;
    if (tok->rstrip)
      while (end < text.size() && is_space(text[end])) ++end;
    encode_text(text.substr(seg_begin, begin - seg_begin));
    out.push_back(tok->id);
    pos = seg_begin = end;
  }
  encode_text(text.substr(seg_begin));
  return out;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos) const {
  return encode_impl(text, add_bos, false);
}

std::vector<int32_t> BpeTokenizer::encode_with_special(std::string_view text, bool add_bos) const {
  return encode_impl(text, add_bos, true);
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  const Impl& m = *impl_;
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= m.vocab.tokens.size()) continue;
    const std::string& t = m.vocab.tokens[size_t(id)];
    if (m.is_added[size_t(id)]) {
      out += t;
      continue;
    }
    for (size_t i = 0; i < t.size();) {
      const size_t start = i;
      const int64_t cp = next_code_point(t, i);
      if (cp >= 0 && cp < 324 && m.unicode_to_byte[cp] >= 0) out += char(m.unicode_to_byte[cp]);
      else out.append(t, start, i - start);
    }
  }
  return out;
}

int BpeTokenizer::vocab_size() const { return int(impl_->vocab.tokens.size()); }
int BpeTokenizer::bos_id() const { return impl_->vocab.bos_id; }
int BpeTokenizer::eos_id() const { return impl_->vocab.eos_id; }
bool BpeTokenizer::adds_bos() const { return impl_->vocab.add_bos; }
bool BpeTokenizer::adds_eos() const { return impl_->vocab.add_eos; }
const BpeVocabulary& BpeTokenizer::vocabulary() const { return impl_->vocab; }
std::vector<std::string> BpeTokenizer::pre_tokenize(std::string_view text) const { return impl_->pre_tokenize(text); }

}  // namespace ptq
