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
// The same for a file made of `pieces` in order (a header and tensors kept apart, never joined).
void write_file_atomic(const std::string& path, const std::vector<std::span<const uint8_t>>& pieces);

// The whole file. Throws Error naming `path` when it cannot be read, is a directory, or is
// larger than `max_bytes`.
std::string read_text_file(const std::string& path, uint64_t max_bytes = UINT64_MAX);

// Throws Error "PATH: is a directory, expected WHAT" (or "cannot open") unless `path` names an
// existing file that is not a directory. Pipes and devices pass: `ptq run <(...)` reads a pipe.
void require_file(const std::string& path, const std::string& what);

}  // namespace ptq
