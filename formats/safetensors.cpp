#include "formats/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"
#include "ptq/mapped_file.h"

namespace ptq {
namespace {

using json = nlohmann::json;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

class EntryParser {
 public:
  EntryParser(const std::string& path, const std::string& name, uint64_t data_size)
      : path_(path), name_(name), data_size_(data_size) {}

  // Returns the entry's info and its begin offset inside the data buffer.
  std::pair<TensorInfo, uint64_t> parse(const json& e) const {
    if (!e.is_object()) fail("expected an object with dtype, shape, data_offsets, found " + kind(e));
    TensorInfo info;
    info.name = name_;
    info.file = path_;
    info.dtype = parse_dtype_field(e);
    info.shape = parse_shape(e);
    auto [begin, end] = parse_offsets(e);
    uint64_t expected = byte_count(info);
    if (expected != end - begin)
      fail("shape " + shape_str(info.shape) + " x " + dtype_name(info.dtype) + " needs " +
           std::to_string(expected) + " bytes but data_offsets [" + std::to_string(begin) + "," +
           std::to_string(end) + "] span " + std::to_string(end - begin));
    info.nbytes = static_cast<size_t>(expected);
    return {info, begin};
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path_ + ": tensor '" + name_ + "': " + what);
  }
  static std::string kind(const json& v) { return describe_json(v); }

  DType parse_dtype_field(const json& e) const {
    auto it = e.find("dtype");
    if (it == e.end() || !it->is_string()) fail("expected a string 'dtype'");
    DType d;
    if (!parse_dtype(it->get<std::string>(), &d))
      fail("unknown dtype '" + it->get<std::string>() + "' (expected one of F32, F16, BF16, I32, I16, I8, U8, I64)");
    return d;
  }

  std::vector<int64_t> parse_shape(const json& e) const {
    auto it = e.find("shape");
    if (it == e.end() || !it->is_array()) fail("expected 'shape' to be a list of non-negative integers");
    std::vector<int64_t> shape;
    for (const json& d : *it) {
      // The parser stores every non-negative integer as unsigned.
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
        fail("expected 'shape' to be a list of non-negative integers, found " + describe_json(*it));
      shape.push_back(d.get<int64_t>());
    }
    return shape;
  }

  std::pair<uint64_t, uint64_t> parse_offsets(const json& e) const {
    auto it = e.find("data_offsets");
    bool ok = it != e.end() && it->is_array() && it->size() == 2 && (*it)[0].is_number_unsigned() &&
              (*it)[1].is_number_unsigned();
    if (!ok) fail("expected 'data_offsets' to be [begin, end] with non-negative integers");
    uint64_t begin = (*it)[0].get<uint64_t>(), end = (*it)[1].get<uint64_t>();
    if (begin > end)
      fail("expected data_offsets [begin, end] with begin <= end, found " + describe_json(*it));
    if (end > data_size_)
      fail("data_offsets [" + std::to_string(begin) + "," + std::to_string(end) +
           "] lie outside the data buffer of " + std::to_string(data_size_) + " bytes");
    return {begin, end};
  }

  // Also the product of the nonzero dimensions must fit: readers form rows x cols from any
  // subset of them, and [0, 2^32, 2^32] holds no bytes yet overflows such a product.
  uint64_t byte_count(const TensorInfo& info) const {
    int64_t nonzero = dtype_size(info.dtype);
    bool empty = false;
    for (int64_t d : info.shape) {
      if (d == 0) empty = true;
      else if (__builtin_mul_overflow(nonzero, d, &nonzero))
        fail("shape " + shape_str(info.shape) + " overflows a 64-bit element count");
    }
    return empty ? 0 : static_cast<uint64_t>(nonzero);
  }

  const std::string& path_;
  const std::string& name_;
  uint64_t data_size_;
};

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  file_ = std::make_unique<MappedFile>(path);
  const size_t size = file_->size();
  if (size < 8)
    throw Error(path + ": truncated safetensors file: " + std::to_string(size) +
                " bytes, expected at least 8 for the header length");
  const uint64_t header_len = read_u64_le(file_->data());
  if (header_len > kMaxSafetensorsHeader)
    throw Error(path + ": header length " + std::to_string(header_len) + " exceeds the format's limit of " +
                std::to_string(kMaxSafetensorsHeader) + " bytes");
  if (header_len > size - 8)
    throw Error(path + ": header length " + std::to_string(header_len) + " is larger than the " +
                std::to_string(size - 8) + " bytes after the length field (file has " +
                std::to_string(size) + " bytes)");
  data_start_ = 8 + static_cast<size_t>(header_len);
  const char* text = reinterpret_cast<const char*>(file_->data() + 8);
  if (header_len == 0 || text[0] != '{')
    throw Error(path + ": the header must be a JSON object starting with '{' (is this a safetensors file?)");
  const json header = parse_json_text(std::string_view(text, header_len), path + ": header");
  if (!header.is_object())
    throw Error(path + ": expected the header to be a JSON object, found " + header.type_name());
  const uint64_t data_size = size - data_start_;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> spans;  // ((begin, end), name)
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(path + ": expected '__metadata__' to be an object of strings");
      for (auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw Error(path + ": __metadata__ '" + k + "': expected a string value");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    auto [info, begin] = EntryParser(path, name, data_size).parse(entry);
    spans.push_back({{begin, begin + info.nbytes}, name});
    offsets_[name] = static_cast<size_t>(begin);
    tensors_[name] = std::move(info);
  }
  check_spans_tile_buffer(spans, data_size);
}

// The format's own rule (safetensors' validate()): sorted by offset, the spans tile the data
// buffer exactly, with no gap, no overlap and no trailing bytes.
void SafetensorsFile::check_spans_tile_buffer(std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>>& spans,
                                              uint64_t data_size) const {
  std::sort(spans.begin(), spans.end());
  uint64_t covered = 0;
  std::string prev;  // the tensor before this one, "" at the start
  for (const auto& [range, name] : spans) {
    if (range.first < covered)
      throw Error(path_ + ": tensor '" + name + "' span starting at " + std::to_string(range.first) +
                  " overlaps tensor '" + prev + "' which ends at " + std::to_string(covered) + "; expected disjoint spans");
    if (range.first > covered)
      throw Error(path_ + ": tensor '" + name + "' starts at byte " + std::to_string(range.first) +
                  " of the data buffer but " +
                  (prev.empty() ? std::string("no tensor precedes it")
                                : "tensor '" + prev + "' ends at " + std::to_string(covered)) +
                  "; the format allows no gap between tensors");
    covered = range.second;
    prev = name;
  }
  if (covered != data_size)
    throw Error(path_ + ": the tensors cover " + std::to_string(covered) + " of the " + std::to_string(data_size) +
                " bytes of the data buffer; the format allows no trailing bytes");
}

SafetensorsFile::~SafetensorsFile() = default;

const uint8_t* SafetensorsFile::data(const std::string& name) const {
  auto it = offsets_.find(name);
  if (it == offsets_.end()) throw Error(path_ + ": no tensor named '" + name + "'");
  return file_->data() + data_start_ + it->second;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::vector<uint8_t> bytes) {
  size_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    PTQ_ASSERT(d >= 0, "negative dimension");
    n *= static_cast<size_t>(d);
  }
  PTQ_ASSERT(n == bytes.size(), "tensor bytes do not match shape x dtype size");
  PTQ_ASSERT(name != "__metadata__");
  entries_[name] = Entry{dtype, std::move(shape), std::move(bytes)};
}

void SafetensorsWriter::add_f32(const std::string& name, const Mat& m, std::vector<int64_t> shape) {
  if (shape.empty()) shape = {m.rows(), m.cols()};
  std::vector<uint8_t> bytes(static_cast<size_t>(m.size()) * 4);
  if (!bytes.empty()) std::memcpy(bytes.data(), m.data(), bytes.size());  // Mat is row-major
  add(name, DType::F32, std::move(shape), std::move(bytes));
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::write(const std::string& path) const {
  // ordered_json keeps __metadata__ first; entries_ is a std::map so tensors come sorted.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, e] : entries_) {
    header[name] = {{"dtype", dtype_name(e.dtype)},
                    {"shape", e.shape},
                    {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string text = header.dump();
  // Padding keeps the data buffer 8-byte aligned in the mapped file.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i) out[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* p = out.data() + 8 + text.size();
  for (const auto& [name, e] : entries_) {
    if (!e.bytes.empty()) std::memcpy(p, e.bytes.data(), e.bytes.size());
    p += e.bytes.size();
  }
  write_file_atomic(path, std::span<const uint8_t>(out));
}

}  // namespace ptq
