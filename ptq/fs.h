#pragma once
// Small filesystem helpers whose failures come back as ptq::Error naming the file.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ptq {

// Writes `path.tmp.<pid>` beside `path`, fsyncs it and renames it over `path`, so a reader never
// sees a half-written checkpoint. The temp file is removed when anything fails.
void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes);
void write_file_atomic(const std::string& path, const std::string& text);

std::string read_text_file(const std::string& path);

}  // namespace ptq
