#pragma once
// Writes GGUF files for tests (formats/gguf_file.h has the layout): well-formed ones from
// metadata and tensors, and, through the raw hooks, every kind of malformed one.
#include <cstdint>
#include <string>
#include <vector>

#include "ptq/tensor.h"

namespace ptq::test {

struct GgufOptions {
  uint32_t version = 3;
  uint32_t alignment = 32;
  int64_t n_tensors_override = -1;  // write this count instead of the real one
  int64_t n_kv_override = -1;
  int64_t offset_delta = 0;         // added to the last tensor's data offset
};

class GgufBuilder {
 public:
  // Metadata, in insertion order.
  void u32(const std::string& key, uint32_t v);
  void u64(const std::string& key, uint64_t v);
  void i32(const std::string& key, int32_t v);
  void f32(const std::string& key, float v);
  void boolean(const std::string& key, bool v);
  void str(const std::string& key, const std::string& v);
  void str_array(const std::string& key, const std::vector<std::string>& v);
  void i32_array(const std::string& key, const std::vector<int32_t>& v);
  void f32_array(const std::string& key, const std::vector<float>& v);
  // A value of any type id, already encoded (for malformed files and the odd types).
  void raw_kv(const std::string& key, uint32_t type, const std::string& value_bytes);

  // A tensor in ggml order (ne[0] innermost) with its stored bytes.
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t ggml_type, std::string data);
  // An F32 tensor from a row-major [rows, cols] (or 1 x n for a vector) matrix.
  void f32_tensor(const std::string& name, const Mat& m, bool vector = false);
  void remove_tensor(const std::string& name);

  using Options = GgufOptions;
  std::string bytes(const Options& o) const;
  std::string bytes() const { return bytes(Options{}); }
  void write(const std::string& path, const Options& o = Options{}) const;

  // Little-endian encodings, for raw_kv.
  static std::string le32(uint32_t v);
  static std::string le64(uint64_t v);
  static std::string gguf_string(const std::string& s);

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::string data;
  };
  std::string kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// A small random llama (hidden 64, 2 layers, 4 heads / 2 kv of 16, ffn 128, vocab 272, rope
// theta 5e5, untied or tied) with a byte-level BPE tokenizer (256 byte tokens, 12 merges,
// 4 control tokens). F32, or with `quantized` token_embd and layer 0's q/k stored as Q8_0 (q/k
// quantized in llama.cpp's permuted row order). `hf` gets the weights a reader must return, by
// HF name in HF layout (q/k un-permuted; quantized ones as their dequantized values).
struct TinyLlama {
  GgufBuilder gguf;
  std::vector<std::pair<std::string, Mat>> hf;
};
// `arch` "qwen2" writes qwen2.* keys, q/k/v biases, no q/k permutation and the qwen2 pre-tokenizer.
TinyLlama tiny_llama_gguf(uint64_t seed, bool tied, bool quantized = false, const std::string& arch = "llama");

// Q8_0 blocks of a row-major matrix (fp16 d = amax / 127, q = round(x / d)), and their values.
std::string q8_0_bytes(const Mat& rows);
Mat q8_0_values(const Mat& rows);

}  // namespace ptq::test
