#pragma once
// A checkpoint directory that appears whole or not at all: files are written into
// `OUT.partial-<pid>/` and the directory is renamed onto OUT by commit(). A crash leaves only
// the .partial directory, which never looks like a finished checkpoint. An existing OUT is
// replaced only at commit time.
#include <cstdint>
#include <span>
#include <string>

namespace ptq {

class OutputDir {
 public:
  explicit OutputDir(const std::string& final_path);
  ~OutputDir();  // removes the partial directory unless committed
  const std::string& staging() const { return staging_; }
  std::string path_of(const std::string& file) const;
  void write_text(const std::string& file, const std::string& text) const;
  void copy_file(const std::string& src, const std::string& file) const;
  void commit();

 private:
  std::string final_, staging_;
  bool committed_ = false;
};

}  // namespace ptq
