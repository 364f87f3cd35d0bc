#include "formats/output_dir.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/hf_files.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"

namespace fs = std::filesystem;

namespace ptq {
namespace {

// Names ptq's formats write into an output: the checkpoint files and every sidecar a checkpoint
// may carry (ptq/hf_files.h). A foreign directory holding one of them is refused even with
// --overwrite, since writing would replace the user's file.
std::set<std::string> usual_names() {
  std::set<std::string> names = {"config.json", "model.safetensors", kOutputMarker};
  for (const char* n : kHfSidecarFiles) names.insert(n);
  return names;
}
const std::set<std::string> kUsualNames = usual_names();
// What a checkpoint written before the marker existed held of ptq's: only these are removed
// when it is replaced.
const char* const kLegacyNames[] = {"config.json", "model.safetensors", "tokenizer.model", "tokenizer.bin",
                                    kOutputMarker};

std::set<std::string> entries_of(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

std::string list_some(const std::set<std::string>& names) {
  std::string s;
  int n = 0;
  for (const auto& name : names) {
    if (n++ == 5) return s + ", ... (" + std::to_string(names.size()) + " entries)";
    s += (s.empty() ? "" : ", ") + name;
  }
  return s;
}

bool plain_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos;
}

// The marker's job and file list; false when it is missing or not a marker ptq wrote.
bool read_marker(const std::string& dir, std::string* job, std::set<std::string>* files) {
  const std::string path = (fs::path(dir) / kOutputMarker).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {
    const nlohmann::json j = parse_json_text(read_text_file(path, 1 << 20), path);
    if (!j.is_object() || j.value("ptq_output", 0) != 1 || !j.contains("files") || !j["files"].is_array())
      return false;
    for (const auto& f : j["files"]) {
      if (!f.is_string() || !plain_name(f.get<std::string>())) return false;
      files->insert(f.get<std::string>());
    }
    *job = j.contains("job_sha256") && j["job_sha256"].is_string() ? j["job_sha256"].get<std::string>() : "";
  } catch (const std::exception&) {
    return false;
  }
  files->insert(kOutputMarker);
  return true;
}

// Checkpoints written before the marker existed carry ptq's provenance in their metadata.
bool legacy_ptq_output(const std::string& dir) {
  const std::string st = (fs::path(dir) / "model.safetensors").string();
  std::error_code ec;
  if (!fs::is_regular_file(st, ec)) return false;
  try {
    return SafetensorsFile(st).metadata().count("ptq.version") > 0;
  } catch (const std::exception&) {
    return false;
  }
}

// Exclusive lock on `path` that stays valid when a finished run unlinks the file: a lock taken
// on an inode that no longer has this name is dropped and taken again.
int lock_file(const std::string& path, const std::string& what) {
  for (;;) {
    const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(what + ": cannot create the lock file " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      throw Error(what + ": another ptq process is writing this output (" + path + " is locked)");
    }
    struct stat held {}, named {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev)
      return fd;
    ::close(fd);
  }
}

// Atomic swap of two directories (Linux renameat2); false when the filesystem cannot.
bool swap_directories(const std::string& a, const std::string& b) {
#ifdef RENAME_EXCHANGE
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0;
#else
  return false;
#endif
}

}  // namespace

OutputDir::OutputDir(const std::string& final_path, Staging staging, bool overwrite)
    : final_(final_path), mode_(staging), overwrite_(overwrite) {
  fs::path p = fs::path(final_path);
  if (p.filename().empty()) p = p.parent_path();
  // "." or ".." would give staging names inside OUT itself; their absolute form does not.
  if (p.filename() == "." || p.filename() == "..") p = fs::absolute(p).lexically_normal().parent_path();
  final_ = p.string();
  if (final_.empty()) throw Error("the output directory must not be empty");
  inspect_existing();
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  if (mode_ == Staging::kResumable) {
    staging_ = final_ + ".partial";
    lock_path_ = final_ + ".partial.lock";
    lock_fd_ = lock_file(lock_path_, final_);
  } else {
    staging_ = final_ + ".partial-" + std::to_string(getpid());
  }
  open_staging();
}

// Classifies what sits at OUT, refusing what ptq must never replace.
void OutputDir::inspect_existing() {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(final_, ec);
  if (ec || st.type() == fs::file_type::not_found) return;
  if (st.type() != fs::file_type::directory)
    throw Error(final_ + ": exists and is not a directory (it is a " +
                (st.type() == fs::file_type::symlink ? std::string("symbolic link") : std::string("file")) +
                "); ptq never replaces it: choose another output directory");
  const std::set<std::string> entries = entries_of(final_);
  if (entries.empty()) {
    existing_ = Existing::kEmpty;
    return;
  }
  std::set<std::string> ours;
  if (read_marker(final_, &existing_job_, &ours) || legacy_ptq_output(final_)) {
    if (ours.empty())
      for (const char* n : kLegacyNames) ours.insert(n);
    existing_ = Existing::kPtqOutput;
    for (const auto& e : entries) (ours.count(e) ? existing_ours_ : existing_foreign_).insert(e);
    return;
  }
  existing_ = Existing::kForeign;
  existing_foreign_ = entries;
  if (!overwrite_)
    throw Error(final_ + ": exists and is not a ptq checkpoint (it holds " + list_some(entries) +
                "); ptq does not replace it: choose another output directory, or pass --overwrite "
                "(output.overwrite in a job) to add ptq's files beside these, none of which is removed");
  for (const std::string& n : kUsualNames)
    if (entries.count(n))
      throw Error(final_ + ": holds '" + n + "', which ptq did not write and would replace; ptq removes "
                  "nothing it did not write, even with --overwrite: move it away or choose another output directory");
}

void OutputDir::open_staging() {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(staging_, ec);
  created_staging_ = st.type() == fs::file_type::not_found;
  if (!created_staging_) {
    if (st.type() != fs::file_type::directory)
      throw Error(staging_ + ": exists and is not ptq's staging directory; move it away");
    for (const auto& name : entries_of(staging_)) {
      // Only ptq's own names may be cleared: resume state, checkpoint files, temp files.
      bool known = name == "resume" || name.find(".tmp.") != std::string::npos;
      for (const std::string& n : kUsualNames) known = known || name == n;
      if (!known)
        throw Error(staging_ + ": holds '" + name + "', so it is not (only) ptq's staging directory; move it away");
      if (mode_ == Staging::kFresh || name != "resume") fs::remove_all(fs::path(staging_) / name, ec);
    }
  }
  ec.clear();
  fs::create_directories(staging_, ec);
  if (ec) throw Error(final_ + ": cannot create output directory: " + ec.message());
}

OutputDir::~OutputDir() {
  std::error_code ec;
  if (!committed_ && (mode_ == Staging::kFresh || (created_staging_ && !keep_on_failure_)))
    fs::remove_all(staging_, ec);
  if (lock_fd_ >= 0) {
    ::unlink(lock_path_.c_str());  // still held: lock_file() retries on a lock of an unlinked file
    ::close(lock_fd_);
  }
}

std::string OutputDir::partial_note() const {
  if (committed_ || mode_ == Staging::kFresh || (created_staging_ && !keep_on_failure_)) return "";
  return "its finished blocks are kept in " + staging_ +
         "/: rerun the same job to resume, or delete that directory to start over";
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

void OutputDir::claim(const std::string& job_sha256) {
  job_sha256_ = job_sha256;
  if (existing_ != Existing::kPtqOutput || existing_job_ == job_sha256 || overwrite_) return;
  throw Error(final_ + ": holds a ptq checkpoint of another job (other inputs, recipe or format); pass "
              "--overwrite (output.overwrite in a job) to replace it, or choose another output directory");
}

void OutputDir::commit() {
  // OUT may have changed since the run began: what is not ptq's now is the user's.
  std::error_code ec;
  existing_foreign_.clear();
  if (fs::is_directory(final_, ec))
    for (const auto& e : entries_of(final_))
      if (!existing_ours_.count(e)) existing_foreign_.insert(e);
  std::set<std::string> files = entries_of(staging_);
  files.erase(kOutputMarker);
  for (const auto& f : files)
    if (existing_foreign_.count(f))
      throw Error(final_ + "/" + f + " exists and was not written by ptq; ptq will not replace it");
  nlohmann::ordered_json marker = {{"ptq_output", 1}, {"job_sha256", job_sha256_}, {"files", files}};
  write_text(kOutputMarker, marker.dump(2) + "\n");
  files.insert(kOutputMarker);
  move_into_place(files);
  committed_ = true;
}

// Whole-directory moves where OUT holds nothing but ptq's files (atomic), else file by file so
// that the user's files stay where they are.
void OutputDir::move_into_place(const std::set<std::string>& new_files) {
  std::error_code ec;
  auto fail = [&](const std::string& what, int err) {
    throw Error(final_ + ": " + what + ": " + std::strerror(err));
  };
  if (!fs::exists(fs::symlink_status(final_, ec))) {
    if (std::rename(staging_.c_str(), final_.c_str()) != 0) fail("cannot move the finished output into place", errno);
    return;
  }
  if (existing_foreign_.empty()) {
    // After the swap the previous output sits under the staging name.
    std::string gone = staging_;
    if (!swap_directories(staging_, final_)) {
      gone = final_ + ".old-" + std::to_string(getpid());
      if (std::rename(final_.c_str(), gone.c_str()) != 0) fail("cannot replace the existing output", errno);
      if (std::rename(staging_.c_str(), final_.c_str()) != 0) fail("cannot move the finished output into place", errno);
    }
    for (const auto& f : existing_ours_) fs::remove_all(fs::path(gone) / f, ec);
    if (!fs::remove(gone, ec) || ec)  // not empty: something appeared that ptq did not write
      std::fprintf(stderr, "output: %s holds files ptq did not write; left in place\n", gone.c_str());
    return;
  }
  for (const auto& f : new_files) {
    if (f == kOutputMarker) continue;
    if (std::rename(path_of(f).c_str(), (fs::path(final_) / f).c_str()) != 0) fail("cannot move " + f + " into place", errno);
  }
  for (const auto& f : existing_ours_)
    if (!new_files.count(f)) fs::remove_all(fs::path(final_) / f, ec);
  // The marker last: until it moves, the directory still describes the previous output.
  if (std::rename(path_of(kOutputMarker).c_str(), (fs::path(final_) / kOutputMarker).c_str()) != 0)
    fail("cannot move the marker into place", errno);
  fs::remove(staging_, ec);
}

}  // namespace ptq
