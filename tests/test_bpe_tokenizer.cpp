// Byte-level BPE: HF tokenizers' split behaviours, the ByteLevel pre-tokenizer, added tokens,
// tokenizer.json features (merge forms, ignore_merges, TemplateProcessing BOS, the Llama
// tokenizer_config override), and malformed tokenizer.json files through the CLI. SmolLM2's real
// tokenizer is tested against llama.cpp in test_smollm2.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "calibration/bpe_tokenizer.h"
#include "calibration/llama2c_tokenizer.h"
#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "calibration/tokenizer_json.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "support/gguf_builder.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Strings = std::vector<std::string>;
using Ids = std::vector<int32_t>;

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}
std::string byte_token(char c) { return utf8(byte_to_unicode(uint8_t(c))); }
const std::string kSpace = byte_token(' ');  // "Ġ"

Strings split(const std::string& text, const std::string& pattern, SplitBehavior b, bool invert = false,
              PreTokenizerStep::Kind kind = PreTokenizerStep::Kind::kRegex) {
  BpeVocabulary v;
  v.source = "test";
  v.tokens = {"a"};
  v.pre = {{kind, pattern, b, invert}};
  return BpeTokenizer(v).pre_tokenize(text);
}

TEST(BpeTokenizer, SplitBehavioursAreHfTokenizers) {
  // The examples of tokenizers' SplitDelimiterBehavior documentation.
  const std::string t = "the-final--countdown";
  EXPECT_EQ(split(t, "-", SplitBehavior::kRemoved), (Strings{"the", "final", "countdown"}));
  EXPECT_EQ(split(t, "-", SplitBehavior::kIsolated), (Strings{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split(t, "-", SplitBehavior::kMergedWithPrevious), (Strings{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split(t, "-", SplitBehavior::kMergedWithNext), (Strings{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split(t, "-", SplitBehavior::kContiguous), (Strings{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split(t, "[a-z]+", SplitBehavior::kRemoved, true), (Strings{"the", "final", "countdown"}));
  EXPECT_EQ(split(t, "--", SplitBehavior::kIsolated, false, PreTokenizerStep::Kind::kLiteral),
            (Strings{"the-final", "--", "countdown"}));
  // Unicode classes and an empty-matching pattern (split points only).
  EXPECT_EQ(split("ab12\xC3\xA9\xE2\x85\xA7", R"(\p{N})", SplitBehavior::kIsolated),
            (Strings{"ab", "1", "2", "\xC3\xA9", "\xE2\x85\xA7"}));  // U+2167 (Roman numeral) is \p{N}
  EXPECT_EQ(split("abc", "(?=b)", SplitBehavior::kIsolated), (Strings{"a", "bc"}));
}

TEST(BpeTokenizer, ByteLevelPreTokenizerWithPrefixSpace) {
  BpeVocabulary v;
  v.source = "test";
  v.tokens = {"a"};
  v.pre = {{PreTokenizerStep::Kind::kPrefixSpace, "", SplitBehavior::kIsolated, false},
           {PreTokenizerStep::Kind::kRegex, kGpt2Pattern, SplitBehavior::kIsolated, false}};
  const BpeTokenizer tok(v);
  EXPECT_EQ(tok.pre_tokenize("hello world"), (Strings{" hello", " world"}));
  EXPECT_EQ(tok.pre_tokenize(" it's  2024!\n"), (Strings{" it", "'s", " ", " 2024", "!", "\n"}));
}

// A byte-level vocabulary: the 256 bytes (ids 0..255), merged tokens from `merges`, then `extra`.
json base_tokenizer(const Strings& merges, const Strings& extra = {}) {
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_token(char(b))] = id++;
  for (const auto& m : merges) {
    const size_t sp = m.find(' ');
    vocab[m.substr(0, sp) + m.substr(sp + 1)] = id++;
  }
  for (const auto& e : extra) vocab[e] = id++;
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
          {"post_processor", {{"type", "ByteLevel"}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}, {"merges", merges}}}};
}

std::string write_json(const json& j, const std::string& dir_name) {
  const std::string dir = test::temp_dir(dir_name);
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  return dir + "/tokenizer.json";
}

int id_in(const json& j, const std::string& token) { return j["model"]["vocab"][token].get<int>(); }

TEST(BpeTokenizer, MergesByRankInBothMergeForms) {
  const Strings merges = {"h e", "l l", "he ll", "hell o", kSpace + " w", "o r"};
  json j = base_tokenizer(merges);
  const auto a = load_tokenizer(write_json(j, "bpe_merges_str"));
  json pairs = json::array();
  for (const auto& m : merges) pairs.push_back({m.substr(0, m.find(' ')), m.substr(m.find(' ') + 1)});
  j["model"]["merges"] = pairs;
  const auto b = load_tokenizer(write_json(j, "bpe_merges_pairs"));
  EXPECT_EQ(a->kind(), "bpe");
  EXPECT_FALSE(a->adds_bos());
  const Ids want = {id_in(j, "hello"), id_in(j, kSpace + "w"), id_in(j, "or"), 'l', 'd'};
  for (const auto* t : {a.get(), b.get()}) {
    EXPECT_EQ(t->encode("hello world", t->adds_bos()), want);
    EXPECT_EQ(t->decode(want), "hello world");
    const std::string bytes("\xFF\x00 bytes\x01", 9);
    EXPECT_EQ(t->decode(t->encode(bytes, false)), bytes);
  }
}

TEST(BpeTokenizer, Llama3StyleTemplateBosAndIgnoreMerges) {
  json j = base_tokenizer({"h e", "l l"}, {kSpace + "hello", "<|begin_of_text|>"});
  const int bos = id_in(j, "<|begin_of_text|>");
  j["added_tokens"] = json::array({json{{"id", bos}, {"content", "<|begin_of_text|>"}, {"special", true}}});
  j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "behavior": "Isolated", "invert": false, "pattern": {"Regex":
       "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})");
  j["post_processor"] = json::parse(R"({"type": "Sequence", "processors": [{"type": "ByteLevel"},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
       "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [)" + std::to_string(bos) +
                                    R"(]}}}]})");
  j["model"]["ignore_merges"] = true;
  const std::string path = write_json(j, "bpe_llama3");
  const auto tok = load_tokenizer(path);
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_EQ(tok->bos_id(), bos);
  // " hello" is a token with no merge path to it: ignore_merges takes it whole.
  EXPECT_EQ(tok->encode(" hello", tok->adds_bos()), (Ids{bos, id_in(j, kSpace + "hello")}));
  EXPECT_EQ(tok->encode("12345", false), (Ids{'1', '2', '3', '4', '5'}));  // two pieces: 123, 45
  auto& bpe = dynamic_cast<const BpeTokenizer&>(*tok);
  EXPECT_EQ(bpe.pre_tokenize("12345 HELLO's"), (Strings{"123", "45", " HELLO", "'s"}));
  EXPECT_EQ(tok->encode_with_special("<|begin_of_text|>x", false), (Ids{bos, 'x'}));
  EXPECT_NE(tok->encode("<|begin_of_text|>x", false).front(), bos);
  // transformers' LlamaTokenizerFast lets tokenizer_config.json switch BOS off.
  write_file_atomic(fs::path(path).parent_path().string() + "/tokenizer_config.json",
                    R"({"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": false})");
  EXPECT_FALSE(load_tokenizer(path)->adds_bos());
  j["model"]["ignore_merges"] = false;
  const auto no_ignore = load_tokenizer(write_json(j, "bpe_llama3_merges"));
  EXPECT_EQ(no_ignore->encode(" hello", false), (Ids{' ', id_in(j, "he"), id_in(j, "ll"), 'o'}));
}

TEST(BpeTokenizer, AddedTokensStripAndSpecialRules) {
  json j = base_tokenizer({}, {"<mask>", "<ctl>", "foo"});
  j["added_tokens"] = json::array(
      {json{{"id", id_in(j, "<mask>")}, {"content", "<mask>"}, {"special", true}, {"lstrip", true}},
       json{{"id", id_in(j, "<ctl>")}, {"content", "<ctl>"}, {"special", true}, {"rstrip", true}},
       json{{"id", id_in(j, "foo")}, {"content", "foo"}, {"special", false}, {"single_word", true}}});
  const auto tok = load_tokenizer(write_json(j, "bpe_added"));
  const int mask = id_in(j, "<mask>"), ctl = id_in(j, "<ctl>"), foo = id_in(j, "foo");
  EXPECT_EQ(tok->encode_with_special("a <mask>b", false), (Ids{'a', mask, 'b'}));
  EXPECT_EQ(tok->encode_with_special("<ctl>  x", false), (Ids{ctl, 'x'}));
  // "foo" only as a whole word; byte b is token b in this vocabulary.
  EXPECT_EQ(tok->encode("foo food", false), (Ids{foo, ' ', 'f', 'o', 'o', 'd'}));
  EXPECT_EQ(tok->encode("<mask>", false).size(), 6u);  // control tokens stay text unless parsing special
}

// As transformers would: a byte-level tokenizer.json first, but the tokenizer.json of a
// SentencePiece model (Metaspace) gives way to its tokenizer.model.
TEST(TokenizerChoice, ByteLevelJsonFirstSentencePieceModelOverMetaspaceJson) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.model", spm);
  const std::string dir = test::temp_dir("tokenizer_choice");
  fs::copy_file(spm, dir + "/tokenizer.model");
  EXPECT_EQ(find_model_tokenizer(dir, ""), dir + "/tokenizer.model");
  json metaspace = base_tokenizer({});
  metaspace["pre_tokenizer"] = json::parse(R"({"type": "Metaspace", "replacement": "_"})");
  write_file_atomic(dir + "/tokenizer.json", metaspace.dump());
  EXPECT_EQ(find_model_tokenizer(dir, ""), dir + "/tokenizer.model");
  write_file_atomic(dir + "/tokenizer.json", base_tokenizer({}).dump());
  EXPECT_EQ(find_model_tokenizer(dir, ""), dir + "/tokenizer.json");
  fs::remove(dir + "/tokenizer.model");
  write_file_atomic(dir + "/tokenizer.json", metaspace.dump());
  EXPECT_EQ(find_model_tokenizer(dir, ""), dir + "/tokenizer.json");  // then loading it says why not
  EXPECT_THROW(load_tokenizer(dir + "/tokenizer.json"), Error);
}

// A GGUF SentencePiece tokenizer ("llama") spells spaces U+2581; built from metadata it must encode
// exactly as the llama2.c tokenizer with the same pieces and scores.
TEST(GgufSentencePiece, MetadataTokenizerEqualsLlama2cTokenizer) {
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tok_path);
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", stories);
  const auto ref = Llama2cTokenizer::load(tok_path);
  TokenizerMetadata meta;
  meta.source = "test metadata";
  meta.model = "llama";
  for (int id = 0; id < ref->vocab_size(); ++id) {
    std::string p;
    for (char c : ref->piece(id)) p += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    meta.tokens.push_back(p);
    meta.scores.push_back(ref->score(id));
  }
  const auto tok = tokenizer_from_metadata(meta);
  EXPECT_EQ(tok->kind(), "llama2c");
  EXPECT_TRUE(tok->adds_bos());
  const std::string text = read_text_file(stories).substr(0, 20000);
  EXPECT_EQ(tok->encode(text, true), ref->encode(text, true));
  EXPECT_EQ(tok->decode(tok->encode(text, true)), ref->decode(ref->encode(text, true)));
  meta.model = "bert";
  EXPECT_THROW(tokenizer_from_metadata(meta), Error);
}

// ---- malformed tokenizer.json through the CLI --------------------------------------------------

struct BadJson {
  std::string name, text, fragment;
};

std::vector<BadJson> bad_tokenizer_files() {
  const Strings merges = {"h e", "l l"};
  const json good = base_tokenizer(merges);
  std::vector<BadJson> v;
  auto with = [&](const std::string& name, const std::function<void(json&)>& change, const std::string& fragment) {
    json j = good;
    change(j);
    v.push_back({name, j.dump(), fragment});
  };
  v.push_back({"not_json", "{\"model\": {\"type\": \"BPE\", ", "malformed JSON"});
  v.push_back({"not_object", "[1, 2, 3]", "expected a JSON object"});
  with("model_type", [](json& j) { j["model"]["type"] = "WordPiece"; }, "model.type 'WordPiece' is not supported");
  with("missing_vocab", [](json& j) { j["model"].erase("vocab"); }, "missing model.vocab");
  with("merge_not_string", [](json& j) { j["model"]["merges"] = {1, 2}; }, "model.merges[0] must be");
  with("merge_no_space", [](json& j) { j["model"]["merges"] = {"hel"}; }, "must be two tokens separated by one space");
  with("merge_unknown", [](json& j) { j["model"]["merges"].push_back("zz qq"); }, "which is not in the vocabulary");
  with("vocab_id_range", [](json& j) { j["model"]["vocab"]["huge"] = 99999999; }, "must be an id in [0,");
  with("vocab_id_negative", [](json& j) { j["model"]["vocab"]["neg"] = -1; }, "must be an id in [0,");
  with("vocab_id_duplicate", [](json& j) { j["model"]["vocab"]["dup"] = 3; }, "is used by both");
  with("added_bad_id", [](json& j) { j["added_tokens"] = json::parse(R"([{"id": -3, "content": "<x>"}])"); },
       "needs an integer id");
  with("added_id_conflict",
       [](json& j) { j["added_tokens"] = json::parse(R"([{"id": 5, "content": "<x>", "special": true}])"); },
       "but model.vocab has");
  with("bad_regex", [](json& j) { j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"},
        {"type": "ByteLevel", "use_regex": false}]})"); }, "does not compile");
  with("bad_behavior", [](json& j) { j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "-"}, "behavior": "Sideways"}, {"type": "ByteLevel"}]})"); },
       "behavior must be one of");
  with("metaspace", [](json& j) { j["pre_tokenizer"] = json::parse(R"({"type": "Metaspace", "replacement": "_"})"); },
       "pre-tokenizer type 'Metaspace' is not supported");
  with("byte_fallback", [](json& j) { j["model"]["byte_fallback"] = true; }, "byte_fallback");
  with("template_ids", [](json& j) { j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "special_tokens": {}})"); }, "special_tokens has no ids for '<s>'");
  return v;
}

TEST(BpeTokenizerMalformed, EveryBadTokenizerJsonIsACleanErrorNamingIt) {
  PTQ_REQUIRE_SHARED("data/pydoc/eval.txt", text);
  const std::string dir = test::temp_dir("bpe_bad");
  const std::string model = dir + "/tiny.gguf";
  test::tiny_llama_gguf(9, true).gguf.write(model);
  const std::string good = write_json(base_tokenizer({"h e", "l l"}), "bpe_bad_good");
  const auto ok = test::run_ptq("eval " + model + " --tokenizer " + good + " --data " + text +
                                " --data-format text --seq-len 8 --max-samples 1 --quiet");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const std::vector<BadJson> files = bad_tokenizer_files();
  ASSERT_GE(files.size(), 10u);
  for (const auto& f : files) {
    const std::string sub = dir + "/" + f.name;
    fs::create_directories(sub);
    const std::string path = sub + "/tokenizer.json";
    write_file_atomic(path, f.text);
    const auto eval = test::run_ptq("eval " + model + " --tokenizer " + path + " --data " + text +
                                    " --data-format text --seq-len 8 --max-samples 1 --quiet");
    EXPECT_EQ(eval.exit_code, 2) << f.name << ": " << eval.err;
    EXPECT_EQ(eval.out, "") << f.name;
    EXPECT_EQ(std::count(eval.err.begin(), eval.err.end(), '\n'), 1) << f.name << ": " << eval.err;
    EXPECT_NE(eval.err.find(path), std::string::npos) << f.name << ": " << eval.err;
    EXPECT_NE(eval.err.find(f.fragment), std::string::npos) << f.name << ": '" << f.fragment << "' not in " << eval.err;
    const std::string out = sub + "/out";
    const auto compress = test::run_ptq("compress " + model + " --tokenizer " + path +
                                        " --method rtn --bits 4 --group-size 32 --format fake --out " + out);
    EXPECT_EQ(compress.exit_code, 2) << f.name << ": " << compress.err;
    EXPECT_NE(compress.err.find(path), std::string::npos) << f.name << ": " << compress.err;
    for (const auto& e : fs::directory_iterator(sub))
      EXPECT_EQ(e.path().filename().string().rfind("out", 0), std::string::npos) << f.name << " left " << e.path();
  }
}

}  // namespace
}  // namespace ptq
