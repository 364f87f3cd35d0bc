#include "formats/gguf_writer.h"

#include <cstring>
#include <span>

#include "formats/gguf_file.h"
#include "ptq/error.h"
#include "ptq/fs.h"

namespace ptq {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kVersion = 3;

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // ptq builds for little-endian hosts only, as GGUF is
  out.insert(out.end(), b, b + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

uint64_t padded(uint64_t n) { return (n + GgufWriter::kAlignment - 1) / GgufWriter::kAlignment * GgufWriter::kAlignment; }

}  // namespace

void GgufWriter::begin_kv(const std::string& key, uint32_t type) {
  PTQ_ASSERT(keys_.insert(key).second, "a GGUF key is set once");
  put_string(kv_, key);
  put<uint32_t>(kv_, type);
  ++n_kv_;
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  begin_kv(key, uint32_t(GgufType::U32));
  put(kv_, v);
}
void GgufWriter::set_i32(const std::string& key, int32_t v) {
  begin_kv(key, uint32_t(GgufType::I32));
  put(kv_, v);
}
void GgufWriter::set_f32(const std::string& key, float v) {
  begin_kv(key, uint32_t(GgufType::F32));
  put(kv_, v);
}
void GgufWriter::set_bool(const std::string& key, bool v) {
  begin_kv(key, uint32_t(GgufType::BOOL));
  put<uint8_t>(kv_, v ? 1 : 0);
}
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  begin_kv(key, uint32_t(GgufType::STRING));
  put_string(kv_, v);
}
void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
  begin_kv(key, uint32_t(GgufType::ARRAY));
  put<uint32_t>(kv_, uint32_t(GgufType::STRING));
  put<uint64_t>(kv_, v.size());
  for (const auto& s : v) put_string(kv_, s);
}
void GgufWriter::set_f32s(const std::string& key, const std::vector<float>& v) {
  begin_kv(key, uint32_t(GgufType::ARRAY));
  put<uint32_t>(kv_, uint32_t(GgufType::F32));
  put<uint64_t>(kv_, v.size());
  for (float x : v) put(kv_, x);
}
void GgufWriter::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  begin_kv(key, uint32_t(GgufType::ARRAY));
  put<uint32_t>(kv_, uint32_t(GgufType::I32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> ne, GgmlType type,
                            std::vector<uint8_t> bytes) {
  PTQ_ASSERT(tensor_names_.insert(name).second, "a GGUF tensor is added once");
  const GgmlTypeTraits& t = ggml_traits(type);
  uint64_t elements = 1;
  for (int64_t n : ne) elements *= uint64_t(n);
  PTQ_ASSERT(!ne.empty() && ne[0] % t.block_size == 0, "rows hold whole blocks");
  PTQ_ASSERT(bytes.size() == ggml_row_bytes(t, elements), "a tensor's bytes match its shape and type");
  tensors_.push_back({name, std::move(ne), type, std::move(bytes)});
}

uint64_t GgufWriter::tensor_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += padded(t.bytes.size());
  return n;
}

void GgufWriter::write(const std::string& path) const {
  std::vector<uint8_t> head;
  put(head, kMagic);
  put(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, n_kv_);
  head.insert(head.end(), kv_.begin(), kv_.end());
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.ne.size()));
    for (int64_t n : t.ne) put<uint64_t>(head, uint64_t(n));
    put<uint32_t>(head, uint32_t(t.type));
    put<uint64_t>(head, offset);
    offset += padded(t.bytes.size());
  }
  head.resize(padded(head.size()), 0);
  static const uint8_t kZeros[kAlignment] = {};
  std::vector<std::span<const uint8_t>> pieces = {head};
  for (const auto& t : tensors_) {
    pieces.emplace_back(t.bytes);
    if (const uint64_t pad = padded(t.bytes.size()) - t.bytes.size()) pieces.emplace_back(kZeros, pad);
  }
  write_file_atomic(path, pieces);
}

}  // namespace ptq
