#pragma once
// JSON from files the user hands us (config.json, safetensors headers, index files), parsed with
// limits so that no input can crash or exhaust ptq:
//  - nesting deeper than kMaxJsonDepth is refused (nlohmann's dump() and destructor recurse);
//  - a key repeated within one object is refused (nlohmann would silently keep the last one);
//  - numbers outside double's range (1e400) and malformed text become ptq::Error.
// Every error names `where` (the file) and fits on one line.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ptq {

inline constexpr int kMaxJsonDepth = 64;

nlohmann::json parse_json_text(std::string_view text, const std::string& where);
// read_text_file + parse_json_text.
nlohmann::json read_json_file(const std::string& path);

// A value for an error message: its type and at most `max_chars` of its JSON text.
std::string describe_json(const nlohmann::json& v, size_t max_chars = 80);

// Typed fields of an object that came from a file: a present field of the wrong type throws
// Error "<where>: field '<key>' must be <what>, found <describe_json>".
std::string json_string_field(const nlohmann::json& obj, const char* key, const std::string& fallback,
                              const std::string& where);
// An integer field within [lo, hi]; absent (or null) gives `fallback`.
int64_t json_int_field(const nlohmann::json& obj, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                       const std::string& where);
bool json_bool_field(const nlohmann::json& obj, const char* key, bool fallback, const std::string& where);

}  // namespace ptq
