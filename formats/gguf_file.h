#pragma once
// GGUF files (ggml's model container, versions 2 and 3), memory-mapped and validated on open.
//
// Byte layout (all little-endian; docs/formats.md):
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x  { string key | u32 value_type | value }
//            string = u64 length + UTF-8 bytes; array = u32 elem_type + u64 count + elements
//            value types: U8 0, I8 1, U16 2, I16 3, U32 4, I32 5, F32 6, BOOL 7, STRING 8,
//                         ARRAY 9, U64 10, I64 11, F64 12
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] (innermost first) | u32 ggml_type |
//                 u64 offset (from the data section) }
//   padding to general.alignment (default 32) | data section
//
// Every count, length and offset is checked against the file size before it is used, so no
// allocation is larger than the file can justify; violations throw ptq::Error naming the file
// (and the key or tensor). Keys and tensor names must be unique; tensor data must be aligned,
// inside the file and not overlapping; nested arrays are refused (ggml writes none).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/ggml_blocks.h"

namespace ptq {

class MappedFile;

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8,
  ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars are widened (integers and bools into `i`, floats into `f`);
// strings and array elements are views into the mapped file, valid while the GgufFile lives.
struct GgufValue {
  GgufType type = GgufType::U8;
  int64_t i = 0;        // integer and bool scalars (U64 values above INT64_MAX are refused)
  double f = 0;         // F32 / F64 scalars
  std::string_view str; // STRING scalars
  // ARRAY: element type and count; numbers stay raw at `data`, strings are listed.
  GgufType elem_type = GgufType::U8;
  uint64_t count = 0;
  const uint8_t* data = nullptr;
  std::vector<std::string_view> strings;

  bool is_integer() const;  // an integer scalar type
  bool is_float() const;    // F32 or F64 scalar
  // Element `k` of a numeric (or BOOL) array, widened.
  int64_t int_at(uint64_t k) const;
  double float_at(uint64_t k) const;
  std::string type_string() const;  // "U32", "ARRAY[STRING]", ...
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the contiguous (innermost) dimension
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;      // from the start of the data section
  uint64_t nbytes = 0;
  int64_t n_elements = 0;
  int64_t rows() const;     // product of ne[1..]
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const;

  // Keys in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  // Typed look-ups; wrong types (and, for required_*, absence) throw Error naming file and key.
  uint64_t required_uint(const std::string& key) const;
  std::optional<uint64_t> optional_uint(const std::string& key) const;
  double required_float(const std::string& key) const;
  std::optional<double> optional_float(const std::string& key) const;
  std::string required_string(const std::string& key) const;
  std::optional<std::string> optional_string(const std::string& key) const;
  std::optional<bool> optional_bool(const std::string& key) const;
  // An array whose elements are strings (elem_strings) or numbers; nullptr when absent.
  const GgufValue* optional_array(const std::string& key, bool elem_strings) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const uint8_t* tensor_data(const GgufTensorInfo& t) const;
  // `t` (all its elements, in storage order) as fp32. Error naming the tensor when ptq has no
  // dequantizer for its type.
  void dequantize(const GgufTensorInfo& t, float* out) const;
  // Rows [row, row + 1) of the tensor viewed as rows() x ne[0].
  void dequantize_row(const GgufTensorInfo& t, int64_t row, float* out) const;

 private:
  void parse();
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// True when `path` is a file that starts with the GGUF magic, or is named *.gguf (so that a
// damaged one is reported as a bad GGUF file rather than tried as another format).
bool is_gguf_file(const std::string& path);

}  // namespace ptq
