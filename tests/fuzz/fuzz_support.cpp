#include "fuzz_target.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace ptq::fuzz {
namespace {

std::map<std::string, Target>& registry() {
  static std::map<std::string, Target> m;
  return m;
}

struct Scratch {
  std::string dir;
  Scratch() {
    std::error_code ec;
    const fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    dir = (base / ("ptq-fuzz-" + std::to_string(getpid()))).string();
    fs::remove_all(dir, ec);
    fs::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

}  // namespace

const std::string& scratch_dir() {
  static Scratch s;
  return s.dir;
}

std::string write_file(const std::string& name, std::string_view bytes) {
  const fs::path p = fs::path(scratch_dir()) / name;
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  return p.string();
}

void remove_path(const std::string& name) {
  std::error_code ec;
  fs::remove_all(fs::path(scratch_dir()) / name, ec);
}

std::vector<std::string_view> split_files(const uint8_t* data, size_t size, size_t max_parts) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = rest.find(kFileSeparator);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kFileSeparator.size());
  }
  parts.push_back(rest);
  return parts;
}

std::string shared_path(const std::string& rel) {
  const char* env = std::getenv("PTQ_SHARED_DIR");
  const fs::path dir = env && *env ? fs::path(env) : fs::path(PTQ_SOURCE_DIR) / ".." / "shared";
  std::error_code ec;
  const fs::path p = dir / rel;
  return fs::exists(p, ec) ? p.lexically_normal().string() : "";
}

void enter_source_dir() {
  static const bool done = [] {
    std::error_code ec;
    fs::current_path(PTQ_SOURCE_DIR, ec);
    return true;
  }();
  (void)done;
}

Registrar::Registrar(const char* name, Target target) { registry()[name] = target; }

const std::map<std::string, Target>& targets() { return registry(); }

}  // namespace ptq::fuzz
