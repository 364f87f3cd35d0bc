#include "formats/output_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>

#include "ptq/error.h"
#include "ptq/fs.h"

namespace fs = std::filesystem;

namespace ptq {

OutputDir::OutputDir(const std::string& final_path, Staging staging) : final_(final_path), mode_(staging) {
  fs::path p = fs::path(final_path);
  if (p.filename().empty()) p = p.parent_path();
  final_ = p.string();
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  if (mode_ == Staging::kResumable) {
    staging_ = final_ + ".partial";
    lock_path_ = final_ + ".partial.lock";
    lock_fd_ = ::open(lock_path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) throw Error(final_ + ": cannot create output directory (lock file " + lock_path_ + ")");
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      throw Error(final_ + ": another ptq process is writing this output (" + lock_path_ + " is locked)");
    }
  } else {
    staging_ = final_ + ".partial-" + std::to_string(getpid());
    fs::remove_all(staging_, ec);
  }
  ec.clear();
  fs::create_directories(staging_, ec);
  if (ec) throw Error(final_ + ": cannot create output directory: " + ec.message());
}

OutputDir::~OutputDir() {
  std::error_code ec;
  if (!committed_ && mode_ == Staging::kFresh) fs::remove_all(staging_, ec);
  if (lock_fd_ >= 0) ::close(lock_fd_);
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

void OutputDir::remove(const std::string& file) const {
  std::error_code ec;
  fs::remove_all(path_of(file), ec);
  if (ec) throw Error(path_of(file) + ": cannot remove: " + ec.message());
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
  if (!lock_path_.empty()) fs::remove(lock_path_, ec);  // still held: no one can race us here
}

}  // namespace ptq
