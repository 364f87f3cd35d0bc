#include "calibration/tokenizer_json.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"

namespace ptq {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// With ptq's limits (ptq/json_read.h): a number beyond double's range, deep nesting or a
// repeated key is an Error, never one of nlohmann's own exceptions.
json parse_json_file(const std::string& path) { return parse_json_text(read_text_file(path), path); }

bool bool_field(const json& obj, const char* key, bool fallback, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(where + "." + key + " must be true or false, found " + it->dump());
  return it->get<bool>();
}

std::string type_of(const json& obj, const std::string& where) {
  if (!obj.is_object() || !obj.contains("type") || !obj["type"].is_string())
    throw Error(where + " must be an object with a string 'type'");
  return obj["type"].get<std::string>();
}

SplitBehavior parse_behavior(const json& v, const std::string& where) {
  static const std::pair<const char*, SplitBehavior> kNames[] = {
      {"Removed", SplitBehavior::kRemoved},
      {"Isolated", SplitBehavior::kIsolated},
      {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
      {"MergedWithNext", SplitBehavior::kMergedWithNext},
      {"Contiguous", SplitBehavior::kContiguous}};
  if (v.is_string())
    for (const auto& [name, b] : kNames)
      if (v.get<std::string>() == name) return b;
  throw Error(where + ".behavior must be one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                      "Contiguous, found " + v.dump());
}

// Appends the steps of one HF pre-tokenizer; counts ByteLevel steps.
void parse_pre(const json& p, const std::string& where, std::vector<PreTokenizerStep>& steps, int* byte_level) {
  const std::string type = type_of(p, where);
  using Kind = PreTokenizerStep::Kind;
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
      throw Error(where + ".pretokenizers must be a list");
    for (size_t k = 0; k < p["pretokenizers"].size(); ++k)
      parse_pre(p["pretokenizers"][k], where + ".pretokenizers[" + std::to_string(k) + "]", steps, byte_level);
  } else if (type == "ByteLevel") {
    ++*byte_level;
    if (bool_field(p, "add_prefix_space", true, where)) steps.push_back({Kind::kPrefixSpace, "", SplitBehavior::kIsolated, false});
    if (bool_field(p, "use_regex", true, where)) steps.push_back({Kind::kRegex, kGpt2Pattern, SplitBehavior::kIsolated, false});
  } else if (type == "Digits") {
    const bool individual = bool_field(p, "individual_digits", false, where);
    steps.push_back({Kind::kRegex, individual ? R"(\p{N})" : R"(\p{N}+)", SplitBehavior::kIsolated, false});
  } else if (type == "Split") {
    const json& pat = p.contains("pattern") ? p["pattern"] : json();
    PreTokenizerStep s;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      s.kind = Kind::kRegex;
      s.pattern = pat["Regex"].get<std::string>();
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      s.kind = Kind::kLiteral;
      s.pattern = pat["String"].get<std::string>();
    } else {
      throw Error(where + ".pattern must be {\"Regex\": ...} or {\"String\": ...}, found " + pat.dump());
    }
    s.behavior = parse_behavior(p.contains("behavior") ? p["behavior"] : json(), where);
    s.invert = bool_field(p, "invert", false, where);
    steps.push_back(std::move(s));
  } else {
    throw Error(where + ": pre-tokenizer type '" + type +
                "' is not supported (ptq reads byte-level BPE: Sequence, Split, Digits, ByteLevel)");
  }
}

struct PostRule {
  std::string bos, eos;  // special token names the template puts first / last; "" = none
  int bos_id = -1, eos_id = -1;
};

int template_special_id(const json& post, const std::string& name, const std::string& where) {
  const json* st = post.contains("special_tokens") ? &post["special_tokens"] : nullptr;
  if (st && st->is_object() && st->contains(name)) {
    const json& e = (*st)[name];
    if (e.is_object() && e.contains("ids") && e["ids"].is_array() && !e["ids"].empty() &&
        e["ids"][0].is_number_integer())
      return e["ids"][0].get<int>();
  }
  throw Error(where + ".special_tokens has no ids for '" + name + "'");
}

void parse_post(const json& p, const std::string& where, PostRule* rule) {
  if (p.is_null()) return;
  const std::string type = type_of(p, where);
  if (type == "Sequence") {
    if (!p.contains("processors") || !p["processors"].is_array()) throw Error(where + ".processors must be a list");
    for (size_t k = 0; k < p["processors"].size(); ++k)
      parse_post(p["processors"][k], where + ".processors[" + std::to_string(k) + "]", rule);
  } else if (type == "TemplateProcessing") {
    const json& single = p.contains("single") ? p["single"] : json();
    if (!single.is_array() || single.empty()) throw Error(where + ".single must be a non-empty list");
    auto special = [&](const json& item) -> std::string {
      if (item.is_object() && item.contains("SpecialToken") && item["SpecialToken"].is_object() &&
          item["SpecialToken"].contains("id") && item["SpecialToken"]["id"].is_string())
        return item["SpecialToken"]["id"].get<std::string>();
      return "";
    };
    rule->bos = special(single.front());
    rule->eos = single.size() > 1 ? special(single.back()) : "";
    if (!rule->bos.empty()) rule->bos_id = template_special_id(p, rule->bos, where);
    if (!rule->eos.empty()) rule->eos_id = template_special_id(p, rule->eos, where);
  } else if (type != "ByteLevel") {
    throw Error(where + ": post-processor type '" + type + "' is not supported (TemplateProcessing, ByteLevel)");
  }
}

void check_normalizer(const json& n, const std::string& where) {
  if (n.is_null()) return;
  const std::string type = type_of(n, where);
  if (type == "NFC") return;  // identity here: see the header
  if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (size_t k = 0; k < n["normalizers"].size(); ++k)
      check_normalizer(n["normalizers"][k], where + ".normalizers[" + std::to_string(k) + "]");
    return;
  }
  throw Error(where + ": normalizer type '" + type + "' is not supported (ptq reads none or NFC)");
}

// A token named in tokenizer_config.json: a string, or an AddedToken object with "content".
std::string config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return "";
}

}  // namespace

BpeVocabulary read_tokenizer_json(const std::string& path) {
  const json j = parse_json_file(path);
  if (!j.is_object()) throw Error(path + ": expected a JSON object (an HF tokenizer.json)");
  if (!j.contains("model") || !j["model"].is_object()) throw Error(path + ": missing the 'model' object");
  const json& model = j["model"];
  const std::string mtype = model.value("type", std::string("BPE"));
  if (mtype != "BPE")
    throw Error(path + ": model.type '" + mtype + "' is not supported (ptq reads byte-level BPE)");
  if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() && model["byte_fallback"].get<bool>())
    throw Error(path + ": model.byte_fallback is set: a SentencePiece-style BPE, not byte-level (use tokenizer.model)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && !(model[key].is_string() && model[key].get<std::string>().empty()))
      throw Error(path + ": model." + key + " is not supported");
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0))
    throw Error(path + ": model.dropout must be null: ptq tokenizes deterministically");
  if (!model.contains("vocab") || !model["vocab"].is_object()) throw Error(path + ": missing model.vocab (an object)");
  if (!model.contains("merges") || !model["merges"].is_array()) throw Error(path + ": missing model.merges (a list)");
  const json& vocab = model["vocab"];
  const json added = j.contains("added_tokens") && !j["added_tokens"].is_null() ? j["added_tokens"] : json::array();
  if (!added.is_array()) throw Error(path + ": added_tokens must be a list");
  // Ids are dense in every real tokenizer; bounding them keeps allocation to what the file holds.
  const int64_t id_limit = int64_t(vocab.size()) + int64_t(added.size());

  BpeVocabulary v;
  v.source = path;
  v.tokens.assign(size_t(vocab.size()), "");
  for (const auto& [tok, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= id_limit)
      throw Error(path + ": model.vocab['" + tok + "'] must be an id in [0, " + std::to_string(id_limit) +
                  "), found " + id.dump());
    const size_t i = size_t(id.get<int64_t>());
    if (i >= v.tokens.size()) v.tokens.resize(i + 1);
    if (!v.tokens[i].empty())
      throw Error(path + ": model.vocab id " + std::to_string(i) + " is used by both '" + v.tokens[i] + "' and '" +
                  tok + "'");
    v.tokens[i] = tok;
  }
  const json& merges = model["merges"];
  v.merges.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    const std::string where = path + ": model.merges[" + std::to_string(r) + "]";
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
        throw Error(where + " '" + s + "' must be two tokens separated by one space");
      v.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      v.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      throw Error(where + " must be \"a b\" or [\"a\", \"b\"], found " + m.dump());
    }
  }
  v.ignore_merges = bool_field(model, "ignore_merges", false, path + ": model");

  for (size_t k = 0; k < added.size(); ++k) {
    const json& a = added[k];
    const std::string where = path + ": added_tokens[" + std::to_string(k) + "]";
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 ||
        a["id"].get<int64_t>() >= id_limit)
      throw Error(where + " needs an integer id in [0, " + std::to_string(id_limit) + ")");
    if (!a.contains("content") || !a["content"].is_string() || a["content"].get<std::string>().empty())
      throw Error(where + " needs a non-empty string content");
    AddedToken t;
    t.id = a["id"].get<int32_t>();
    t.content = a["content"].get<std::string>();
    t.special = bool_field(a, "special", false, where);
    t.lstrip = bool_field(a, "lstrip", false, where);
    t.rstrip = bool_field(a, "rstrip", false, where);
    t.single_word = bool_field(a, "single_word", false, where);
    if (size_t(t.id) >= v.tokens.size()) v.tokens.resize(size_t(t.id) + 1);
    std::string& slot = v.tokens[size_t(t.id)];
    if (!slot.empty() && slot != t.content)
      throw Error(where + " gives id " + std::to_string(t.id) + " to '" + t.content + "', but model.vocab has '" +
                  slot + "' there");
    slot = t.content;
    v.added.push_back(std::move(t));
  }

  check_normalizer(j.contains("normalizer") ? j["normalizer"] : json(), path + ": normalizer");
  int byte_level = 0;
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null())
    parse_pre(j["pre_tokenizer"], path + ": pre_tokenizer", v.pre, &byte_level);
  if (byte_level != 1)
    throw Error(path + ": pre_tokenizer has " + std::to_string(byte_level) +
                " ByteLevel steps; a byte-level BPE tokenizer has exactly one");
  PostRule rule;
  parse_post(j.contains("post_processor") ? j["post_processor"] : json(), path + ": post_processor", &rule);
  v.add_bos = rule.bos_id >= 0;
  v.add_eos = rule.eos_id >= 0;
  v.bos_id = rule.bos_id;
  v.eos_id = rule.eos_id;

  std::unordered_map<std::string, int> ids;
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (!v.tokens[i].empty()) ids.emplace(v.tokens[i], int(i));
  auto id_of = [&](const std::string& s) { auto it = ids.find(s); return it == ids.end() ? -1 : it->second; };
  if (model.contains("unk_token") && model["unk_token"].is_string()) v.unk_id = id_of(model["unk_token"].get<std::string>());
  const std::filesystem::path cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(cfg_path, ec)) {
    const json cfg = parse_json_file(cfg_path.string());
    if (cfg.is_object()) {
      if (int id = id_of(config_token(cfg, "bos_token")); id >= 0) v.bos_id = id;
      if (int id = id_of(config_token(cfg, "eos_token")); id >= 0) v.eos_id = id;
      if (cfg.value("tokenizer_class", std::string()).rfind("Llama", 0) == 0) {
        v.add_bos = bool_field(cfg, "add_bos_token", v.add_bos, cfg_path.string());
        v.add_eos = bool_field(cfg, "add_eos_token", v.add_eos, cfg_path.string());
      }
    }
  }
  return v;
}

bool is_byte_level_tokenizer_json(const std::string& path) {
  json j;
  try {
    j = parse_json_file(path);
  } catch (const Error&) {
    return true;  // let the reader report what is wrong with it
  }
  if (!j.is_object() || !j.contains("pre_tokenizer")) return false;
  return j["pre_tokenizer"].dump().find("\"ByteLevel\"") != std::string::npos;
}

std::string tokenizer_json_from_metadata(const TokenizerMetadata& meta) {
  const BpeVocabulary v = bpe_vocabulary_from_metadata(meta);
  ordered_json added = ordered_json::array();
  for (const auto& t : v.added)
    added.push_back({{"id", t.id}, {"content", t.content}, {"single_word", t.single_word}, {"lstrip", t.lstrip},
                     {"rstrip", t.rstrip}, {"normalized", false}, {"special", t.special}});
  ordered_json pre = ordered_json::array();
  for (const auto& s : v.pre) {
    if (s.kind != PreTokenizerStep::Kind::kRegex)
      throw Error(meta.source + ": cannot express this pre-tokenizer as tokenizer.json");
    pre.push_back({{"type", "Split"}, {"pattern", {{"Regex", s.pattern}}}, {"behavior", "Isolated"}, {"invert", false}});
  }
  pre.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  ordered_json post = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  if (v.add_bos || v.add_eos) {
    auto special = [&](int id) { return ordered_json{{"SpecialToken", {{"id", v.tokens[size_t(id)]}, {"type_id", 0}}}}; };
    ordered_json single = ordered_json::array(), pair = ordered_json::array(), specials = ordered_json::object();
    if (v.add_bos) {
      single.push_back(special(v.bos_id));
      pair.push_back(special(v.bos_id));
      specials[v.tokens[size_t(v.bos_id)]] = {{"id", v.tokens[size_t(v.bos_id)]}, {"ids", {v.bos_id}}, {"tokens", {v.tokens[size_t(v.bos_id)]}}};
    }
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    pair.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    if (v.add_eos) {
      single.push_back(special(v.eos_id));
      pair.push_back(special(v.eos_id));
      specials[v.tokens[size_t(v.eos_id)]] = {{"id", v.tokens[size_t(v.eos_id)]}, {"ids", {v.eos_id}}, {"tokens", {v.tokens[size_t(v.eos_id)]}}};
    }
    post = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
  }
  // A sorted map (ordered_json looks keys up linearly: quadratic for 49k tokens); the first id of a
  // repeated string wins.
  json vocab = json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (!v.tokens[i].empty()) vocab.emplace(v.tokens[i], i);
  ordered_json merges = ordered_json::array();
  for (const auto& [a, b] : v.merges) merges.push_back(a + " " + b);
  ordered_json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", pre}}},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", v.unk_id >= 0 ? ordered_json(v.tokens[size_t(v.unk_id)]) : ordered_json()},
        {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
        {"byte_fallback", false}, {"ignore_merges", v.ignore_merges}, {"vocab", vocab}, {"merges", merges}}}};
  return j.dump(1) + "\n";
}

std::string tokenizer_config_from_metadata(const TokenizerMetadata& meta) {
  auto name = [&](int id) { return id >= 0 && size_t(id) < meta.tokens.size() ? ordered_json(meta.tokens[size_t(id)]) : ordered_json(); };
  const BpeVocabulary v = bpe_vocabulary_from_metadata(meta);
  ordered_json j = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                    {"add_bos_token", v.add_bos},
                    {"add_eos_token", v.add_eos},
                    {"bos_token", name(meta.bos_id)},
                    {"eos_token", name(meta.eos_id)},
                    {"unk_token", name(meta.unk_id)},
                    {"pad_token", name(meta.pad_id)},
                    {"clean_up_tokenization_spaces", false}};
  if (!meta.chat_template.empty()) j["chat_template"] = meta.chat_template;
  return j.dump(2) + "\n";
}

}  // namespace ptq
