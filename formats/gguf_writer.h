#pragma once
// Writes GGUF version 3 files, the byte layout formats/gguf_file.h documents (the reader):
//   header (magic, version 3, n_tensors, n_kv) | KV pairs in the order they were set |
//   tensor infos in the order tensors were added, offsets from the data section, each tensor
//   starting at a multiple of the alignment (32, ggml's default; general.alignment is not
//   written) | zero padding to the alignment | tensor data, each padded to the alignment.
// Keys and tensor names must be unique (a repeat is a broken invariant: the exporter names them).
// write() is atomic (temp file + fsync + rename): a crash never leaves a .gguf that looks whole.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "formats/ggml_blocks.h"

namespace ptq {

class GgufWriter {
 public:
  static constexpr uint64_t kAlignment = 32;

  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);

  // `ne` in ggml order (ne[0] contiguous: a [N, K] weight is {K, N}); `bytes` exactly the
  // type's row bytes times the rows.
  void add_tensor(const std::string& name, std::vector<int64_t> ne, GgmlType type, std::vector<uint8_t> bytes);

  void write(const std::string& path) const;
  uint64_t tensor_bytes() const;  // data section size, padding included

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    GgmlType type;
    std::vector<uint8_t> bytes;
  };
  void begin_kv(const std::string& key, uint32_t type);
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  std::set<std::string> keys_;
  std::vector<Tensor> tensors_;
  std::set<std::string> tensor_names_;
};

}  // namespace ptq
