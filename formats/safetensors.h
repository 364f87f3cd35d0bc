#pragma once
// Safetensors (https://github.com/huggingface/safetensors) reader and writer.
//
// Byte layout of a .safetensors file:
//   [0, 8)          u64 little-endian N: length of the JSON header
//   [8, 8+N)        UTF-8 JSON object: name -> {"dtype": "F32"|..., "shape": [..],
//                   "data_offsets": [begin, end]} plus optional "__metadata__": {str: str};
//                   may be padded with trailing spaces
//   [8+N, EOF)      the data buffer; each tensor's bytes at [8+N+begin, 8+N+end), row-major,
//                   little-endian, end-begin == prod(shape) * dtype size
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ptq/model.h"

namespace ptq {

class MappedFile;

// The header's size limit, as in the reference implementation (safetensors' MAX_HEADER_SIZE).
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

// One .safetensors file, memory-mapped and validated on open with the format's own rules: the
// header length is at most kMaxSafetensorsHeader, the header is a JSON object starting with
// '{' (no duplicate keys, nesting bounded), every entry's dtype is known, shape product x dtype
// size equals its byte span (and the product of the nonzero dimensions fits in int64), and the
// spans, sorted, tile the data buffer exactly: no gap, no overlap, no trailing bytes.
// Violations throw Error naming the file and tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const uint8_t* data(const std::string& name) const;  // throws Error when absent

 private:
  void check_spans_tile_buffer(std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>>& spans,
                               uint64_t data_size) const;
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  size_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, size_t> offsets_;
  std::map<std::string, std::string> metadata_;
};

// Accumulates tensors, then writes them atomically (temp file in the same directory + rename).
// Tensors are written in name order so the output is byte-identical for identical inputs.
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape,
           std::vector<uint8_t> bytes);
  void add_f32(const std::string& name, const Mat& m, std::vector<int64_t> shape = {});
  void set_metadata(const std::string& key, const std::string& value);
  void write(const std::string& path) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ptq
