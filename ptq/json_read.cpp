#include "ptq/json_read.h"

#include <algorithm>
#include <set>
#include <vector>

#include "ptq/error.h"
#include "ptq/fs.h"

namespace ptq {
namespace {

using json = nlohmann::json;

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

// nlohmann prefixes "[json.exception.parse_error.101] "; the rest is the useful part.
std::string library_message(const json::exception& e) {
  std::string s = e.what();
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find("] ");
    if (close != std::string::npos) s = s.substr(close + 2);
  }
  return one_line(s);
}

// Tracks the open containers while the parser runs: depth and each object's keys.
class Limits {
 public:
  explicit Limits(const std::string& where) : where_(where) {}
  bool operator()(int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (open_.size() >= size_t(kMaxJsonDepth))
          throw Error(where_ + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        open_.push_back({event == json::parse_event_t::object_start, {}});
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!open_.empty()) open_.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_.empty() && open_.back().is_object && parsed.is_string() &&
            !open_.back().keys.insert(parsed.get_ref<const std::string&>()).second)
          {
          std::string key = parsed.dump();
          if (key.size() > 80) key = key.substr(0, 80) + "...";
          throw Error(where_ + ": duplicate key " + key + " in a JSON object");
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  }

 private:
  struct Open {
    bool is_object;
    std::set<std::string> keys;
  };
  const std::string& where_;
  std::vector<Open> open_;
};

[[noreturn]] void wrong_type(const json& v, const char* key, const char* what, const std::string& where) {
  throw Error(where + ": field '" + key + "' must be " + what + ", found " + describe_json(v));
}

}  // namespace

json parse_json_text(std::string_view text, const std::string& where) {
  try {
    return json::parse(text.begin(), text.end(), Limits(where));
  } catch (const json::exception& e) {
    throw Error(where + ": malformed JSON: " + library_message(e));
  }
}

json read_json_file(const std::string& path) { return parse_json_text(read_text_file(path), path); }

std::string describe_json(const json& v, size_t max_chars) {
  std::string text = one_line(v.dump(-1, ' ', false, json::error_handler_t::replace));
  if (text.size() > max_chars) text = text.substr(0, max_chars) + "...";
  return std::string(v.type_name()) + " " + text;
}

std::string json_string_field(const json& obj, const char* key, const std::string& fallback,
                              const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) wrong_type(*it, key, "a string", where);
  return it->get<std::string>();
}

int64_t json_int_field(const json& obj, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                       const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  const std::string range = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!it->is_number_integer()) wrong_type(*it, key, range.c_str(), where);
  // Unsigned values above INT64_MAX are out of any range we accept.
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)) wrong_type(*it, key, range.c_str(), where);
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) wrong_type(*it, key, range.c_str(), where);
  return v;
}

bool json_bool_field(const json& obj, const char* key, bool fallback, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) wrong_type(*it, key, "true or false", where);
  return it->get<bool>();
}

}  // namespace ptq
