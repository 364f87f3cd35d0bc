#pragma once
// A checkpoint directory that appears whole or not at all: files are written into a staging
// directory beside OUT and the directory is renamed onto OUT by commit(). A crash leaves only
// the staging directory, whose name never looks like a finished checkpoint. An existing OUT is
// replaced only at commit time.
//
// Staging names:
//  - kFresh:     `OUT.partial-<pid>/`, emptied on open and removed unless committed.
//  - kResumable: `OUT.partial/`, kept as found (it may hold an interrupted run's resume state)
//                and kept on failure. An exclusive lock (flock on `OUT.partial.lock`) stops
//                two runs from sharing it; the lock file is removed at commit.
#include <cstdint>
#include <span>
#include <string>

namespace ptq {

class OutputDir {
 public:
  enum class Staging { kFresh, kResumable };
  explicit OutputDir(const std::string& final_path, Staging staging = Staging::kFresh);
  ~OutputDir();  // removes a fresh partial directory unless committed; releases the lock
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;
  const std::string& staging() const { return staging_; }
  const std::string& final_path() const { return final_; }
  std::string path_of(const std::string& file) const;
  void write_text(const std::string& file, const std::string& text) const;
  void copy_file(const std::string& src, const std::string& file) const;
  // Removes a file or directory of the staging area (e.g. resume state before commit).
  void remove(const std::string& file) const;
  void commit();

 private:
  std::string final_, staging_, lock_path_;
  Staging mode_;
  int lock_fd_ = -1;
  bool committed_ = false;
};

}  // namespace ptq
