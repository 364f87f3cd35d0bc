#pragma once
// Read-only memory map of a whole file. Checkpoints are mapped rather than read so that opening
// a multi-gigabyte model costs nothing until a tensor is actually touched.
#include <cstddef>
#include <cstdint>
#include <string>

namespace ptq {

class MappedFile {
 public:
  // Throws Error "PATH: cannot open: <strerror>" when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  size_t size() const { return size_; }
  const uint8_t* data() const { return data_; }  // nullptr for an empty file

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ptq
