#include "formats/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include "ptq/error.h"
#include "ptq/mapped_file.h"

namespace ptq {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS

// The byte size of a scalar of type t (0 for STRING / ARRAY / unknown).
size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::STRING: case GgufType::ARRAY: return 0;
  }
  return 0;
}

bool known_type(uint32_t t) { return t <= uint32_t(GgufType::F64); }

std::string hex_bytes(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

// Bounds-checked little-endian reader over the mapped file.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& path) : p_(data), size_(size), path_(path) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      throw Error(path_ + ": truncated GGUF: " + what + " needs " + std::to_string(n) + " bytes at offset " +
                  std::to_string(pos_) + " but the file has " + std::to_string(size_) + " bytes");
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view string(const std::string& what) {
    const uint64_t len = read<uint64_t>(what + " (length)");
    need(len, what);
    std::string_view s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }
  const uint8_t* take(uint64_t n, const std::string& what) {
    need(n, what);
    const uint8_t* at = p_ + pos_;
    pos_ += n;
    return at;
  }

 private:
  const uint8_t* p_;
  uint64_t size_, pos_ = 0;
  const std::string& path_;
};

int64_t read_int_scalar(GgufType t, const uint8_t* p) {
  switch (t) {
    case GgufType::U8: return p[0];
    case GgufType::I8: return int8_t(p[0]);
    case GgufType::BOOL: return p[0] != 0;
    case GgufType::U16: { uint16_t v; std::memcpy(&v, p, 2); return v; }
    case GgufType::I16: { int16_t v; std::memcpy(&v, p, 2); return v; }
    case GgufType::U32: { uint32_t v; std::memcpy(&v, p, 4); return v; }
    case GgufType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case GgufType::U64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      return v > uint64_t(std::numeric_limits<int64_t>::max()) ? -1 : int64_t(v);
    }
    case GgufType::I64: { int64_t v; std::memcpy(&v, p, 8); return v; }
    default: return 0;
  }
}

double read_float_scalar(GgufType t, const uint8_t* p) {
  if (t == GgufType::F32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  if (t == GgufType::F64) {
    double v;
    std::memcpy(&v, p, 8);
    return v;
  }
  return double(read_int_scalar(t, p));
}

bool is_int_type(GgufType t) {
  return t != GgufType::F32 && t != GgufType::F64 && t != GgufType::BOOL && t != GgufType::STRING &&
         t != GgufType::ARRAY;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "U8";
    case GgufType::I8: return "I8";
    case GgufType::U16: return "U16";
    case GgufType::I16: return "I16";
    case GgufType::U32: return "U32";
    case GgufType::I32: return "I32";
    case GgufType::F32: return "F32";
    case GgufType::BOOL: return "BOOL";
    case GgufType::STRING: return "STRING";
    case GgufType::ARRAY: return "ARRAY";
    case GgufType::U64: return "U64";
    case GgufType::I64: return "I64";
    case GgufType::F64: return "F64";
  }
  return "?";
}

bool GgufValue::is_integer() const { return is_int_type(type); }
bool GgufValue::is_float() const { return type == GgufType::F32 || type == GgufType::F64; }

int64_t GgufValue::int_at(uint64_t k) const {
  PTQ_ASSERT(type == GgufType::ARRAY && k < count && data, "numeric array element in range");
  return read_int_scalar(elem_type, data + k * scalar_size(elem_type));
}

double GgufValue::float_at(uint64_t k) const {
  PTQ_ASSERT(type == GgufType::ARRAY && k < count && data, "numeric array element in range");
  return read_float_scalar(elem_type, data + k * scalar_size(elem_type));
}

std::string GgufValue::type_string() const {
  if (type != GgufType::ARRAY) return gguf_type_name(type);
  return std::string("ARRAY[") + gguf_type_name(elem_type) + "]";
}

int64_t GgufTensorInfo::rows() const {
  int64_t r = 1;
  for (size_t d = 1; d < ne.size(); ++d) r *= ne[d];
  return r;
}

GgufFile::GgufFile(const std::string& path) : path_(path), file_(std::make_unique<MappedFile>(path)) { parse(); }
GgufFile::~GgufFile() = default;

uint64_t GgufFile::file_size() const { return file_->size(); }

void GgufFile::parse() {
  Cursor c(file_->data(), file_->size(), path_);
  if (file_->size() >= 4) {
    uint32_t magic;
    std::memcpy(&magic, file_->data(), 4);
    if (magic != kMagic)
      throw Error(path_ + ": not a GGUF file: it starts with bytes " + hex_bytes(file_->data(), 4) +
                  ", expected \"GGUF\" (47475546)");
  }
  c.read<uint32_t>("the magic");
  version_ = c.read<uint32_t>("the version");
  if (version_ == 1)
    throw Error(path_ + ": GGUF version 1 (32-bit counts) is not supported; ptq reads versions 2 and 3");
  if (version_ == 0x02000000u || version_ == 0x03000000u)
    throw Error(path_ + ": big-endian GGUF files are not supported");
  if (version_ != 2 && version_ != 3)
    throw Error(path_ + ": unsupported GGUF version " + std::to_string(version_) + " (ptq reads versions 2 and 3)");
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // Each key/value takes at least 13 bytes (length, a 1-byte key, type, a 1-byte value) and each
  // tensor info at least 33, so larger counts cannot be honest.
  if (n_kv > c.remaining() / 13)
    throw Error(path_ + ": GGUF header claims " + std::to_string(n_kv) + " metadata entries, more than the " +
                std::to_string(file_->size()) + "-byte file can hold");
  if (n_tensors > c.remaining() / 33)
    throw Error(path_ + ": GGUF header claims " + std::to_string(n_tensors) + " tensors, more than the " +
                std::to_string(file_->size()) + "-byte file can hold");

  kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string entry = "metadata entry " + std::to_string(k);
    std::string key(c.string(entry + " key"));
    const std::string where = "metadata key '" + key + "'";
    const uint32_t type = c.read<uint32_t>(where + " type");
    if (!known_type(type))
      throw Error(path_ + ": " + where + " has unknown value type " + std::to_string(type));
    GgufValue v;
    v.type = GgufType(type);
    if (v.type == GgufType::STRING) {
      v.str = c.string(where);
    } else if (v.type == GgufType::ARRAY) {
      const uint32_t et = c.read<uint32_t>(where + " element type");
      if (!known_type(et))
        throw Error(path_ + ": " + where + " is an array of unknown type " + std::to_string(et));
      v.elem_type = GgufType(et);
      if (v.elem_type == GgufType::ARRAY)
        throw Error(path_ + ": " + where + " is an array of arrays, which GGUF readers do not support");
      v.count = c.read<uint64_t>(where + " element count");
      if (v.elem_type == GgufType::STRING) {
        if (v.count > c.remaining() / 8)
          throw Error(path_ + ": " + where + " claims " + std::to_string(v.count) +
                      " strings, more than the rest of the file can hold");
        v.strings.reserve(static_cast<size_t>(v.count));
        for (uint64_t e = 0; e < v.count; ++e) v.strings.push_back(c.string(where + " element " + std::to_string(e)));
      } else {
        const uint64_t size = scalar_size(v.elem_type);
        if (v.count > c.remaining() / size)
          throw Error(path_ + ": " + where + " claims " + std::to_string(v.count) + " " +
                      gguf_type_name(v.elem_type) + " elements, more than the rest of the file can hold");
        v.data = c.take(v.count * size, where);
      }
    } else {
      const uint8_t* p = c.take(scalar_size(v.type), where);
      if (v.is_float()) {
        v.f = read_float_scalar(v.type, p);
      } else {
        v.i = read_int_scalar(v.type, p);
        if (v.type == GgufType::U64 && v.i < 0)
          throw Error(path_ + ": " + where + " holds a U64 value above 2^63, which ptq does not read");
      }
    }
    if (kv_index_.count(key)) throw Error(path_ + ": duplicate " + where);
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::U32)
      throw Error(path_ + ": metadata key 'general.alignment' must be U32, found " + a->type_string());
    if (a->i == 0 || (a->i & (a->i - 1)) != 0)
      throw Error(path_ + ": general.alignment " + std::to_string(a->i) + " is not a power of two");
    alignment_ = uint64_t(a->i);
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = std::string(c.string("tensor info " + std::to_string(k) + " name"));
    const std::string where = "tensor '" + t.name + "'";
    const uint32_t n_dims = c.read<uint32_t>(where + " dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      throw Error(path_ + ": " + where + " has " + std::to_string(n_dims) + " dimensions (expected 1 to 4)");
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>(where + " ne[" + std::to_string(d) + "]");
      if (ne > uint64_t(std::numeric_limits<int64_t>::max()) || (ne != 0 && n > uint64_t(std::numeric_limits<int64_t>::max()) / ne))
        throw Error(path_ + ": " + where + " has an element count that overflows 64 bits");
      n *= ne;
      t.ne.push_back(int64_t(ne));
    }
    const uint32_t type = c.read<uint32_t>(where + " type");
    const GgmlTypeTraits* traits = find_ggml_type(type);
    if (!traits) throw Error(path_ + ": " + where + " has unknown ggml type id " + std::to_string(type));
    t.type = traits->type;
    t.offset = c.read<uint64_t>(where + " data offset");
    if (t.ne[0] % traits->block_size != 0)
      throw Error(path_ + ": " + where + " of type " + traits->name + " has ne[0] = " + std::to_string(t.ne[0]) +
                  ", not a multiple of its block size " + std::to_string(traits->block_size));
    t.n_elements = int64_t(n);
    // At most 8 bytes per element, and n < 2^63, so this cannot overflow once divided first.
    t.nbytes = n / traits->block_size * traits->type_size;
    if (tensor_index_.count(t.name)) throw Error(path_ + ": duplicate " + where);
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  const uint64_t end_of_infos = c.pos();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t size = file_->size();
  const uint64_t data_size = data_offset_ <= size ? size - data_offset_ : 0;
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : tensors_) {
    const std::string where = "tensor '" + t.name + "'";
    if (t.offset % alignment_ != 0)
      throw Error(path_ + ": " + where + " data offset " + std::to_string(t.offset) +
                  " is not a multiple of the alignment " + std::to_string(alignment_));
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      throw Error(path_ + ": " + where + " data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                  ") lies outside the file's " + std::to_string(data_size) + "-byte data section (file truncated?)");
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k)
    if (by_offset[k - 1]->offset + by_offset[k - 1]->nbytes > by_offset[k]->offset)
      throw Error(path_ + ": tensor '" + by_offset[k - 1]->name + "' and tensor '" + by_offset[k]->name +
                  "' overlap in the data section");
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::optional<uint64_t> GgufFile::optional_uint(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer() || v->i < 0)
    throw Error(path_ + ": metadata key '" + key + "' must be a non-negative integer, found " +
                (v->is_integer() ? std::to_string(v->i) : v->type_string()));
  return uint64_t(v->i);
}

uint64_t GgufFile::required_uint(const std::string& key) const {
  auto v = optional_uint(key);
  if (!v) throw Error(path_ + ": missing required metadata key '" + key + "' (an unsigned integer)");
  return *v;
}

std::optional<double> GgufFile::optional_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->is_float()) return v->f;
  if (v->is_integer()) return double(v->i);
  throw Error(path_ + ": metadata key '" + key + "' must be a number, found " + v->type_string());
}

double GgufFile::required_float(const std::string& key) const {
  auto v = optional_float(key);
  if (!v) throw Error(path_ + ": missing required metadata key '" + key + "' (a number)");
  return *v;
}

std::optional<std::string> GgufFile::optional_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::STRING)
    throw Error(path_ + ": metadata key '" + key + "' must be a STRING, found " + v->type_string());
  return std::string(v->str);
}

std::string GgufFile::required_string(const std::string& key) const {
  auto v = optional_string(key);
  if (!v) throw Error(path_ + ": missing required metadata key '" + key + "' (a string)");
  return *v;
}

std::optional<bool> GgufFile::optional_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::BOOL)
    throw Error(path_ + ": metadata key '" + key + "' must be a BOOL, found " + v->type_string());
  return v->i != 0;
}

const GgufValue* GgufFile::optional_array(const std::string& key, bool elem_strings) const {
  const GgufValue* v = find(key);
  if (!v) return nullptr;
  const bool ok = v->type == GgufType::ARRAY &&
                  (elem_strings ? v->elem_type == GgufType::STRING : v->elem_type != GgufType::STRING);
  if (!ok)
    throw Error(path_ + ": metadata key '" + key + "' must be an array of " +
                (elem_strings ? "strings" : "numbers") + ", found " + v->type_string());
  return v;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& t) const {
  return file_->data() + data_offset_ + t.offset;
}

static DequantizeRowFn dequantizer(const std::string& path, const GgufTensorInfo& t) {
  const GgmlTypeTraits& tr = ggml_traits(t.type);
  if (!tr.dequantize)
    throw Error(path + ": tensor '" + t.name + "' has type " + tr.name + ", which ptq cannot dequantize (it reads " +
                dequantizable_ggml_types() + ")");
  return tr.dequantize;
}

void GgufFile::dequantize(const GgufTensorInfo& t, float* out) const {
  const DequantizeRowFn fn = dequantizer(path_, t);
  const uint64_t row_bytes = ggml_row_bytes(ggml_traits(t.type), uint64_t(t.ne[0]));
  const uint8_t* src = tensor_data(t);
  for (int64_t r = 0; r < t.rows(); ++r) fn(src + uint64_t(r) * row_bytes, out + r * t.ne[0], t.ne[0]);
}

void GgufFile::dequantize_row(const GgufTensorInfo& t, int64_t row, float* out) const {
  PTQ_ASSERT(row >= 0 && row < t.rows());
  const uint64_t row_bytes = ggml_row_bytes(ggml_traits(t.type), uint64_t(t.ne[0]));
  dequantizer(path_, t)(tensor_data(t) + uint64_t(row) * row_bytes, out, t.ne[0]);
}

bool is_gguf_file(const std::string& path) {
  if (path.ends_with(".gguf")) return true;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace ptq
