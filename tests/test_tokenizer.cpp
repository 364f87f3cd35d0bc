// Tokenizers against the reference tools. Expected ids were produced outside the repository:
// llama2.c ids by karpathy/llama2.c run.c's encode() (compiled with a small driver), SentencePiece
// ids by the `sentencepiece` Python package (0.2.3).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "calibration/llama2c_tokenizer.h"
#include "calibration/sentencepiece_tokenizer.h"
#include "calibration/tokenizer.h"
#include "ptq/error.h"
#include "support/shared_data.h"

namespace {

using Ids = std::vector<int32_t>;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The golden protocol: split on <|endoftext|>, strip surrounding whitespace (Python str.strip).
std::vector<std::string> stories(const std::string& path) {
  const std::string text = read_text(path), sep = "<|endoftext|>", ws = " \t\n\r\f\v";
  std::vector<std::string> out;
  for (size_t pos = 0;;) {
    const size_t end = text.find(sep, pos);
    std::string s = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    const size_t b = s.find_first_not_of(ws);
    out.push_back(b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(ws) - b + 1));
    if (end == std::string::npos) return out;
    pos = end + sep.size();
  }
}

struct Case {
  std::string text;
  Ids ids;
  std::string decoded = text;  // what the reference decodes `ids` back to
};

// run.c encode(text, bos=1) on tok512.bin (ids include BOS).
const std::vector<Case> kLlama2cCases = {
    {"Once upon a time", {1, 403, 407, 261, 378}},
    {"The cat  sat on the mat.", {1, 291, 280, 294, 410, 262, 294, 353, 265, 284, 294, 426}},
    {"caf\xC3\xA9 \xF0\x9F\x98\x80", {1, 280, 412, 431, 485, 410, 243, 162, 155, 131}},
    {"", {1}},
    {"Tom ran home.\nHe was happy.",
     {1, 274, 287, 352, 303, 270, 287, 411, 426, 13, 440, 411, 286, 393, 426}},
};

// sentencepiece encode(text) on tok512.model (no BOS). The same vocabulary, but SentencePiece
// collapses the double space that run.c keeps as an extra " " (410).
const std::vector<Case> kSentencePieceCases = {
    {"Once upon a time", {403, 407, 261, 378}},
    {"The cat  sat on the mat.", {291, 280, 294, 262, 294, 353, 265, 284, 294, 426}},
    {"caf\xC3\xA9 \xF0\x9F\x98\x80", {280, 412, 431, 485, 410, 243, 162, 155, 131}},
    {"", {}},
    {"Tom ran home.\nHe was happy.",
     {274, 287, 352, 303, 270, 287, 411, 426, 13, 440, 411, 286, 393, 426}},
};

// sentencepiece encode(text) / decode(ids) on pydoc4M/tokenizer.model (BPE, vocab 2048). Its
// normaliser removes extra whitespace, so indentation does not survive the round trip.
const std::vector<Case> kPydocCases = {
    {"def add(a, b):\n    return a + b\n",
     {437, 555, 1862, 1841, 1860, 280, 687, 13, 461, 261, 1343, 280, 13},
     "def add(a, b):\n return a + b\n"},
    {"import os\nprint(os.path.join('a', 'b'))",
     {586,  939,  13,  1154, 484,  1862, 1338, 1855, 1023, 1855,
      1890, 1842, 260, 624,  1841, 500,  406,  1858, 604,  1861}},
    {"Return the number of items in a container.",
     {637, 268, 802, 307, 1219, 1845, 284, 261, 774, 265, 1855}},
    {"", {}},
};

// run.c encode(story 15, bos=1): the first validation story (0-based, after splitting and
// stripping) with a double space; tok512.model's SentencePiece ids are these minus index 537.
const Ids kStory15Llama2c = {
    1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 280, 388, 266, 368, 411, 306,
    412, 426, 338, 286, 384, 344, 444, 429, 275, 266, 267, 298, 414, 267, 265, 284, 295, 433, 316,
    335, 311, 284, 425, 423, 267, 268, 425, 422, 262, 287, 411, 272, 347, 418, 426, 410, 447, 419,
    366, 273, 421, 355, 261, 420, 277, 264, 432, 368, 411, 306, 412, 262, 427, 309, 413, 266, 261,
    280, 412, 425, 421, 417, 431, 421, 327, 285, 269, 282, 414, 271, 413, 266, 261, 413, 312, 432,
    262, 283, 299, 313, 446, 425, 423, 343, 443, 410, 448, 415, 294, 410, 293, 351, 308, 299, 450,
    436, 426, 320, 285, 284, 425, 423, 262, 423, 290, 266, 269, 336, 313, 434, 415, 294, 432, 284,
    422, 279, 295, 421, 299, 432, 410, 293, 261, 280, 412, 425, 421, 417, 431, 421, 327, 285, 426,
    359, 413, 439, 419, 399, 348, 425, 423, 343, 443, 436, 426, 301, 414, 368, 411, 306, 412, 269,
    311, 284, 425, 423, 343, 279, 411, 429, 292, 266, 267, 268, 425, 422, 265, 280, 412, 425, 421,
    417, 431, 421, 327, 285, 432, 269, 265, 416, 263, 377, 270, 287, 411, 426, 13,  448, 260, 416,
    366, 298, 309, 270, 287, 411, 432, 368, 411, 306, 412, 439, 419, 284, 425, 423, 270, 414, 339,
    266, 322, 413, 414, 265, 409, 275, 429, 260, 416, 432, 269, 349, 295, 413, 266, 267, 280, 323,
    265, 280, 412, 425, 421, 417, 431, 421, 327, 285, 322, 413, 414, 262, 423, 388, 282, 417, 411,
    331, 419, 426, 410, 447, 419, 384, 289, 261, 419, 368, 411, 306, 412, 394, 263, 415, 294, 286,
    365, 302, 299, 432, 358, 336, 313, 458, 414, 443, 392, 425, 423, 343, 432, 279, 289, 439, 413,
    282, 295, 413, 312, 443, 436, 368, 323, 311, 284, 425, 423, 410, 276, 427, 421, 417, 266, 313,
    441, 415, 432, 376, 353, 411, 432, 382, 404, 266, 267, 282, 295, 413, 265, 280, 412, 425, 421,
    417, 431, 421, 327, 285, 384, 351, 312, 439, 419, 410, 276, 380, 422, 267, 344, 294, 436, 426,
    410, 13,  445, 323, 368, 411, 306, 412, 286, 272, 411, 411, 421, 299, 384, 284, 293, 285, 412,
    430, 305, 329, 429, 412, 425, 372, 358, 391, 266, 267, 410, 354, 411, 427, 265, 280, 412, 425,
    421, 417, 431, 421, 327, 285, 263, 415, 414, 305, 426, 301, 414, 311, 284, 425, 423, 280, 314,
    411, 269, 262, 294, 404, 444, 413, 267, 368, 411, 306, 412, 269, 336, 313, 455, 289, 439, 413,
    263, 304, 420, 422, 432, 262, 424, 411, 316, 260, 295, 413, 426, 359, 439, 306, 280, 323, 265,
    280, 412, 425, 421, 417, 431, 421, 327, 285, 322, 413, 414, 399, 262, 423, 388, 282, 417, 411,
    331, 419, 432, 269, 265, 416, 364, 280, 303, 337, 335, 312, 436, 426, 410, 13,  440, 411, 295,
    299, 308, 293, 432, 368, 411, 306, 412, 439, 419, 272, 412, 331, 278, 275, 350, 269, 358, 336,
    313, 461, 411, 388, 422, 450, 319, 415, 348, 283, 443, 274, 415, 303, 433, 364, 284, 425, 423,
    343, 443, 436, 426, 410, 410, 447, 264, 272, 420, 287, 265, 416, 353, 432, 368, 411, 306, 412,
    269, 311, 284, 425, 423, 282, 295, 413, 265, 280, 412, 425, 421, 417, 431, 421, 327, 285, 344,
    363, 328, 432, 269, 368, 411, 306, 412, 344, 435, 302, 280, 276, 294, 266, 261, 298, 314, 411,
    387, 344, 294, 299, 312, 269, 358, 439, 419, 261, 421, 424, 283, 419, 265, 365, 417, 411, 356,
    263, 260, 416, 312, 439, 419, 279, 271, 416, 285, 378, 426};
constexpr size_t kStory15ExtraSpace = 537;

// run.c's merge loop, written plainly (quadratic): the oracle for the heap-based merge.
Ids naive_encode(const ptq::Llama2cTokenizer& tok, std::string_view text, bool bos) {
  Ids split;
  if (bos) split.push_back(1);
  if (!text.empty()) split.push_back(tok.lookup(" "));
  for (size_t i = 0; i < text.size();) {
    size_t n = 1;
    while (n < 4 && i + n < text.size() && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
      ++n;
    const int id = tok.lookup(text.substr(i, n));
    if (id >= 0)
      split.push_back(id);
    else
      for (size_t k = 0; k < n; ++k) split.push_back(static_cast<unsigned char>(text[i + k]) + 3);
    i += n;
  }
  for (;;) {
    float best = -1e10f;
    int best_id = -1, best_i = -1;
    for (size_t i = 0; i + 1 < split.size(); ++i) {
      const int id = tok.lookup(tok.piece(split[i]) + tok.piece(split[i + 1]));
      if (id >= 0 && tok.score(id) > best)
        best = tok.score(id), best_id = id, best_i = static_cast<int>(i);
    }
    if (best_i < 0) return split;
    split[static_cast<size_t>(best_i)] = best_id;
    split.erase(split.begin() + best_i + 1);
  }
}

}  // namespace

TEST(Llama2cTokenizer, MatchesRunCOnReferenceTexts) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", path);
  auto tok = ptq::load_tokenizer(path, 512);
  EXPECT_EQ(tok->kind(), "llama2c");
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  for (const Case& c : kLlama2cCases) {
    EXPECT_EQ(tok->encode(c.text, true), c.ids) << "text: " << c.text;
    EXPECT_EQ(tok->encode(c.text, false), Ids(c.ids.begin() + 1, c.ids.end()))
        << "text: " << c.text;
  }
}

TEST(Llama2cTokenizer, MatchesGoldenPromptAndDecodesGreedyText) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", path);
  PTQ_REQUIRE_SHARED("golden/stories260K.json", golden_path);
  const auto golden = nlohmann::json::parse(read_text(golden_path));
  auto tok = ptq::load_tokenizer(path, 512);
  EXPECT_EQ(tok->encode(golden["prompt"]["text"].get<std::string>(), true),
            golden["prompt"]["ids"].get<Ids>());
  EXPECT_EQ(tok->decode(golden["greedy"]["ids"].get<Ids>()),
            golden["greedy"]["text"].get<std::string>());
}

TEST(Llama2cTokenizer, RoundTripsAsciiText) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", path);
  auto tok = ptq::load_tokenizer(path);
  for (const std::string text : {"Once upon a time", "Hello, world!  Two spaces.", " leading space",
                                 "tabs\tand\nnewlines\n\n", "x", "<0x41> is not a byte token"}) {
    EXPECT_EQ(tok->decode(tok->encode(text, true)), text);
    EXPECT_EQ(tok->decode(tok->encode(text, false)), text);
  }
  // Byte-fallback tokens decode to their raw bytes, so non-ASCII text survives too.
  const std::string utf8 = "caf\xC3\xA9 \xF0\x9F\x98\x80";
  EXPECT_EQ(tok->decode(tok->encode(utf8, true)), utf8);
}

TEST(Llama2cTokenizer, HeapMergeMatchesQuadraticLoop) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", path);
  auto tok = ptq::Llama2cTokenizer::load(path, 512);
  // Short alphabets give many equal-score candidates, exercising the leftmost tie rule.
  const std::vector<std::string> alphabet = {
      "a",    "e",   "t", "h", " ", "  ", "\n", ".", "th", "\xC3\xA9", "\xF0\x9F\x98\x80",
      "\x80", "the "};
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int len = static_cast<int>(rng() % 60);
    for (int i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
    ASSERT_EQ(tok->encode(text, trial % 2 == 0), naive_encode(*tok, text, trial % 2 == 0))
        << "text: " << text;
  }
}

TEST(Llama2cTokenizer, DiffersFromSentencePieceOnlyAtDoubleSpace) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", bin);
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.model", model);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  const std::string story = stories(data).at(15);
  ASSERT_NE(story.find("  "), std::string::npos);
  auto l2 = ptq::load_tokenizer(bin, 512);
  auto sp = ptq::load_tokenizer(model, 512);
  ASSERT_EQ(sp->kind(), "sentencepiece");
  EXPECT_EQ(l2->encode(story, true), kStory15Llama2c);
  Ids expected_sp = kStory15Llama2c;
  ASSERT_EQ(expected_sp[kStory15ExtraSpace], 410);  // the " " piece
  expected_sp.erase(expected_sp.begin() + kStory15ExtraSpace);
  EXPECT_EQ(sp->encode(story, true), expected_sp);
}

TEST(Llama2cTokenizer, ValidationStoriesGiveGoldenTokenCount) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", path);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data);
  auto tok = ptq::load_tokenizer(path, 512);
  const auto all = stories(data);
  ASSERT_GE(all.size(), 20u);
  size_t total = 0;
  for (size_t i = 0; i < 20; ++i) total += std::min<size_t>(tok->encode(all[i], true).size(), 512);
  // Golden: 7372 predicted tokens = sum of (len - 1) over the 20 sequences.
  EXPECT_EQ(total, 7372u + 20u);
}

TEST(Llama2cTokenizer, EncodesWikiText2InReasonableTime) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", path);
  PTQ_REQUIRE_SHARED("data/wikitext2/wikitext2-test.txt", data);
  auto tok = ptq::load_tokenizer(path, 512);
  const std::string text = read_text(data);
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = tok->encode(text, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ timing ] wikitext2-test: %zu bytes -> %zu tokens in %.3f s\n", text.size(),
              ids.size(), s);
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_LT(ids.size(), text.size());
}

TEST(Llama2cTokenizer, RejectsMalformedFiles) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", path);
  const std::string good = read_text(path);
  const std::string dir = ptq::test::temp_dir("tokenizer_bad");
  auto write = [&](const std::string& name, const std::string& bytes) {
    const std::string p = dir + "/" + name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  };
  auto expect_error = [](const std::string& p, int vocab, const std::string& needle) {
    try {
      ptq::load_tokenizer(p, vocab);
      ADD_FAILURE() << p << ": expected ptq::Error";
    } catch (const ptq::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(p), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  };
  expect_error(write("short.bin", good.substr(0, 2)), 0, "max_token_length");
  // Header 4 bytes, then token 0 "<unk>" (8 + 5 bytes), then token 1's score and length.
  expect_error(write("cut_piece.bin", good.substr(0, 4 + 13 + 8 + 2)), 0, "past the end");
  expect_error(write("cut_length.bin", good.substr(0, 4 + 13 + 6)), 0, "length of token 1");
  expect_error(write("cut_score.bin", good.substr(0, 4 + 13 + 2)), 0, "score of token 1");
  std::string negative = good;
  const int32_t minus_one = -1;
  std::memcpy(negative.data() + 8, &minus_one, 4);  // token 0's length
  expect_error(write("negative.bin", negative), 0, "negative");
  expect_error(path, 32000, "expected the model's vocabulary of 32000");
  expect_error(dir + "/missing.bin", 0, "cannot open");
}

TEST(SentencePieceTokenizer, MatchesPythonSentencePiece) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.model", path);
  auto tok = ptq::load_tokenizer(path, 512);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  for (const Case& c : kSentencePieceCases) {
    EXPECT_EQ(tok->encode(c.text, false), c.ids) << "text: " << c.text;
    Ids with_bos = {1};
    with_bos.insert(with_bos.end(), c.ids.begin(), c.ids.end());
    EXPECT_EQ(tok->encode(c.text, true), with_bos) << "text: " << c.text;
  }
  EXPECT_EQ(tok->decode(tok->encode("Once upon a time", true)), "Once upon a time");
}

TEST(SentencePieceTokenizer, MatchesPythonSentencePieceOnPydocBpe) {
  PTQ_REQUIRE_SHARED("models/pydoc4M/tokenizer.model", path);
  auto tok = ptq::load_tokenizer(path, 2048);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), 2048);
  for (const Case& c : kPydocCases) {
    EXPECT_EQ(tok->encode(c.text, false), c.ids) << "text: " << c.text;
    EXPECT_EQ(tok->decode(c.ids), c.decoded);
  }
  EXPECT_THROW(tok->decode({5000}), ptq::Error);
  EXPECT_THROW(ptq::load_tokenizer(path, 512), ptq::Error);
}
