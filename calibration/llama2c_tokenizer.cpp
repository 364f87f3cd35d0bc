#include "calibration/llama2c_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <queue>
#include <sstream>

#include "ptq/error.h"

namespace ptq {
namespace {

// run.c starts its best score at -1e10f and only takes a strictly greater one, so pairs whose
// merged piece scores that low are never merged; keeping the bound keeps the ids identical.
constexpr float kNoMerge = -1e10f;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class Reader {
 public:
  Reader(const std::string& bytes, const std::string& path) : bytes_(bytes), path_(path) {}
  size_t left() const { return bytes_.size() - pos_; }
  size_t pos() const { return pos_; }

  template <class T>
  T scalar(const std::string& what) {
    if (left() < sizeof(T))
      fail("expected " + what + ", found only " + std::to_string(left()) + " bytes");
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string bytes(size_t n) {
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  [[noreturn]] void fail(const std::string& what) const {
    std::ostringstream os;
    os << path_ << ": not a valid llama2.c tokenizer.bin: at byte " << pos_ << " of "
       << bytes_.size() << ", " << what;
    throw Error(os.str());
  }

 private:
  const std::string& bytes_;
  const std::string& path_;
  size_t pos_ = 0;
};

struct Node {
  int32_t id, prev, next;
  uint32_t version;  // bumped whenever the node changes or dies, so queued pairs go stale
};

struct Candidate {
  float score;
  int32_t left, right, merged;
  uint32_t left_version, right_version;
};

// Highest score first; on equal scores the leftmost pair, as run.c's left-to-right scan with a
// strict '>' picks it. Node indices grow left to right, so they order pairs by position.
struct LowerPriority {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

bool parse_byte_piece(std::string_view p, unsigned char* byte) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return false;
  int hi = hex(p[3]), lo = hex(p[4]);
  if (hi < 0 || lo < 0) return false;
  *byte = static_cast<unsigned char>(hi * 16 + lo);
  return true;
}

}  // namespace

std::unique_ptr<Llama2cTokenizer> Llama2cTokenizer::load(const std::string& path,
                                                         int expected_vocab) {
  const std::string bytes = read_all(path);
  Reader r(bytes, path);
  const int32_t max_len = r.scalar<int32_t>("the 4-byte max_token_length header");
  if (max_len < 0) r.fail("max_token_length " + std::to_string(max_len) + " is negative");
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (r.left() > 0) {
    const std::string tok = "token " + std::to_string(pieces.size());
    scores.push_back(r.scalar<float>("the 4-byte score of " + tok));
    const int32_t len = r.scalar<int32_t>("the 4-byte length of " + tok);
    if (len < 0) r.fail(tok + ": length " + std::to_string(len) + " is negative");
    if (static_cast<size_t>(len) > r.left())
      r.fail(tok + ": length " + std::to_string(len) + " runs past the end of the file (" +
             std::to_string(r.left()) + " bytes left)");
    pieces.push_back(r.bytes(static_cast<size_t>(len)));
  }
  if (pieces.empty()) r.fail("expected at least one token");
  if (expected_vocab > 0 && static_cast<int>(pieces.size()) != expected_vocab)
    throw Error(path + ": llama2.c tokenizer has " + std::to_string(pieces.size()) +
                " tokens, expected the model's vocabulary of " + std::to_string(expected_vocab));
  return std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(scores), path);
}

Llama2cTokenizer::Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores,
                                   std::string source)
    : pieces_(std::move(pieces)), scores_(std::move(scores)), source_(std::move(source)) {
  PTQ_ASSERT(pieces_.size() == scores_.size());
  // run.c's bsearch would return any one of duplicated pieces; the first is the stable choice.
  for (size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], static_cast<int32_t>(i));
  byte_pieces_.resize(256);
  for (int b = 0; b < 256; ++b) byte_pieces_[static_cast<size_t>(b)] = static_cast<char>(b);
}

int Llama2cTokenizer::lookup(std::string_view s) const {
  auto it = index_.find(s);
  return it == index_.end() ? -1 : it->second;
}

std::vector<int32_t> Llama2cTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids = split_code_points(text, add_bos);
  merge_pairs(ids);
  return ids;
}

std::vector<int32_t> Llama2cTokenizer::split_code_points(std::string_view text,
                                                         bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 2);
  if (add_bos) ids.push_back(bos_id());
  if (text.empty()) return ids;
  // SentencePiece's add_dummy_prefix, as run.c approximates it: a " " token, also before
  // text that already starts with a space.
  const int space = lookup(" ");
  if (space < 0) throw Error(source_ + ": tokenizer has no \" \" piece for the dummy prefix");
  ids.push_back(space);
  auto continuation = [&](size_t i) {
    return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80;
  };
  for (size_t i = 0; i < text.size();) {
    size_t n = 1;
    // run.c caps a code point at 4 bytes; stray continuation bytes then start a new one.
    while (n < 4 && continuation(i + n)) ++n;
    const std::string_view cp = text.substr(i, n);
    if (int id = lookup(cp); id >= 0) {
      ids.push_back(id);
    } else {
      // Byte fallback: the first three ids are <unk>, <s>, </s>, so <0xXX> is id XX + 3.
      for (unsigned char b : cp) {
        if (b + 3 >= vocab_size())
          throw Error(source_ + ": byte fallback id " + std::to_string(b + 3) +
                      " is outside the vocabulary of " + std::to_string(vocab_size()));
        ids.push_back(b + 3);
      }
    }
    i += n;
  }
  return ids;
}

void Llama2cTokenizer::merge_pairs(std::vector<int32_t>& ids) const {
  const auto n = static_cast<int32_t>(ids.size());
  if (n < 2) return;
  std::vector<Node> nodes(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    nodes[static_cast<size_t>(i)] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, 0};

  // run.c rescans every pair after each merge (quadratic). A max-heap of pairs, with stale
  // entries skipped on pop, always yields the pair run.c would pick: all live pairs are queued,
  // ordered by (score, leftmost).
  std::priority_queue<Candidate, std::vector<Candidate>, LowerPriority> heap;
  std::string concat;
  auto push = [&](int32_t left) {
    if (left < 0) return;
    const Node& l = nodes[static_cast<size_t>(left)];
    if (l.next < 0) return;
    const Node& r = nodes[static_cast<size_t>(l.next)];
    concat.assign(pieces_[static_cast<size_t>(l.id)]).append(pieces_[static_cast<size_t>(r.id)]);
    const int merged = lookup(concat);
    if (merged < 0 || !(scores_[static_cast<size_t>(merged)] > kNoMerge)) return;
    heap.push({scores_[static_cast<size_t>(merged)], left, l.next, merged, l.version, r.version});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Node& l = nodes[static_cast<size_t>(c.left)];
    Node& r = nodes[static_cast<size_t>(c.right)];
    if (l.version != c.left_version || r.version != c.right_version || l.next != c.right) continue;
    l.id = c.merged;
    l.next = r.next;
    if (r.next >= 0) nodes[static_cast<size_t>(r.next)].prev = c.left;
    ++l.version;
    ++r.version;
    push(l.prev);
    push(c.left);
  }

  ids.clear();
  for (int32_t i = 0; i >= 0; i = nodes[static_cast<size_t>(i)].next)  // node 0 never dies
    ids.push_back(nodes[static_cast<size_t>(i)].id);
}

std::string_view Llama2cTokenizer::decode_piece(int32_t prev, int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error(source_ + ": cannot decode token id " + std::to_string(id) +
                ", outside the vocabulary of " + std::to_string(vocab_size()));
  // BOS/EOS are markers, not text (run.c never prints the BOS it starts from).
  if (id == bos_id() || id == eos_id()) return {};
  std::string_view p = pieces_[static_cast<size_t>(id)];
  // Undo the dummy prefix: SentencePiece drops the leading space after BOS (llama2.c PR #89).
  if (prev == bos_id() && !p.empty() && p.front() == ' ') p.remove_prefix(1);
  if (unsigned char b; parse_byte_piece(p, &b)) return std::string_view(byte_pieces_).substr(b, 1);
  return p;
}

std::string Llama2cTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  // A sequence without BOS still starts with encode's dummy prefix, so treat it as after BOS.
  int32_t prev = bos_id();
  for (int32_t id : ids) {
    out.append(decode_piece(prev, id));
    prev = id;
  }
  return out;
}

std::string Llama2cTokenizer::serialize() const {
  std::string out;
  auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  int32_t max_len = 0;
  for (const auto& p : pieces_) max_len = std::max(max_len, int32_t(p.size()));
  put(&max_len, 4);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const int32_t len = int32_t(pieces_[i].size());
    put(&scores_[i], 4);
    put(&len, 4);
    put(pieces_[i].data(), pieces_[i].size());
  }
  return out;
}

}  // namespace ptq
