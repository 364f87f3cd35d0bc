#include "formats/output_dir.h"

#include <unistd.h>

#include <filesystem>

#include "ptq/error.h"
#include "ptq/fs.h"

namespace fs = std::filesystem;

namespace ptq {

OutputDir::OutputDir(const std::string& final_path) : final_(final_path) {
  fs::path p = fs::path(final_path);
  if (p.filename().empty()) p = p.parent_path();
  final_ = p.string();
  staging_ = final_ + ".partial-" + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(staging_, ec);
  fs::create_directories(staging_, ec);
  if (ec) throw Error(final_ + ": cannot create output directory: " + ec.message());
}

OutputDir::~OutputDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(staging_, ec);
  }
}

std::string OutputDir::path_of(const std::string& file) const {
  return (fs::path(staging_) / file).string();
}

void OutputDir::write_text(const std::string& file, const std::string& text) const {
  write_file_atomic(path_of(file), text);
}

void OutputDir::copy_file(const std::string& src, const std::string& file) const {
  std::error_code ec;
  fs::copy_file(src, path_of(file), fs::copy_options::overwrite_existing, ec);
  if (ec) throw Error(src + ": cannot copy into the output: " + ec.message());
}

void OutputDir::commit() {
  std::error_code ec;
  std::string old = final_ + ".old-" + std::to_string(getpid());
  if (fs::exists(final_)) fs::rename(final_, old, ec);
  if (ec) throw Error(final_ + ": cannot replace the existing output: " + ec.message());
  fs::rename(staging_, final_, ec);
  if (ec) throw Error(final_ + ": cannot move the finished output into place: " + ec.message());
  committed_ = true;
  fs::remove_all(old, ec);
}

}  // namespace ptq
