#include "support/shared_data.h"

#include <cstdlib>

namespace fs = std::filesystem;

namespace ptq::test {

std::string shared_dir() {
  const char* env = std::getenv("PTQ_SHARED_DIR");
  fs::path p = env && *env ? fs::path(env) : fs::path(PTQ_SOURCE_DIR) / ".." / "shared";
  std::error_code ec;
  if (!fs::is_directory(p, ec)) return "";
  return fs::weakly_canonical(p).string();
}

std::string shared_path(const std::string& rel) {
  std::string dir = shared_dir();
  if (dir.empty()) return "";
  fs::path p = fs::path(dir) / rel;
  std::error_code ec;
  return fs::exists(p, ec) ? p.string() : "";
}

std::string temp_dir(const std::string& name) {
  fs::path p = fs::path(PTQ_BINARY_DIR) / "test_tmp" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string ptq_binary() {
  const char* env = std::getenv("PTQ_BIN");
  if (env && *env) return env;
  return (fs::path(PTQ_BINARY_DIR) / "ptq").string();
}

}  // namespace ptq::test
