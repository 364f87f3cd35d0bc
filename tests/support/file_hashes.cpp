#include "support/file_hashes.h"

#include <filesystem>

#include "ptq/sha256.h"

namespace ptq::test {

std::map<std::string, std::string> file_hashes(const std::string& dir) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = sha256_file_hex(e.path().string());
  return out;
}

}  // namespace ptq::test
