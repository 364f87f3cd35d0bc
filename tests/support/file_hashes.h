#pragma once
// Content hashes of every file under a directory, for "byte-identical output" checks.
#include <map>
#include <string>

namespace ptq::test {

// Relative path -> SHA-256 (hex) of every regular file below dir.
std::map<std::string, std::string> file_hashes(const std::string& dir);

}  // namespace ptq::test
