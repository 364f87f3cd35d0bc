#include "formats/packed_layout.h"

#include <bit>
#include <cctype>
#include <cstring>
#include <numeric>

#include "ptq/error.h"
#include "ptq/json_read.h"

namespace ptq {

static_assert(std::endian::native == std::endian::little,
              "packed buffers are copied as little-endian words");

bool natural_g_idx(const GridCodes& q) {
  for (int c = 0; c < q.cols; ++c) {
    const int want = q.grid.group_size <= 0 ? 0 : c / q.grid.group_size;
    if (q.g_idx[c] != want) return false;
  }
  return true;
}

std::string packed_layer_refusal(const PackedLayout& layout, const QuantizedLayer& layer) {
  if (layer.sparse || layer.low_rank || layer.input_transform || layer.grid.coded_scales ||
      layer.grid.coded_zeros)
    return "it stores only a dense grid (use --format ptq for sparse, low-rank, coded-statistic and "
           "input-transform parts)";
  if (!layer.grid.integer_zeros())
    return "its zero points are integers on the grid; this layer has fractional zeros or additive offsets";
  std::string why = layout.grid_refusal(layer.rows(), layer.cols(), layer.grid.grid);
  return why.empty() ? layout.codes_refusal(layer.grid) : why;
}

const PackedLayout* layout_for_config(const nlohmann::json& qc, const std::string& where) {
  if (!qc.is_object()) return nullptr;
  const std::string method = json_string_field(qc, "quant_method", "", where + ": quantization_config");
  if (method == "gptq") {
    const std::string fmt = json_string_field(qc, "checkpoint_format", "gptq", where + ": quantization_config");
    if (fmt == "gptq") return &gptq_layout();
    if (fmt == "gptq_v2") return &gptq_v2_layout();
    throw Error(where + ": GPTQ checkpoint_format '" + fmt + "' is not supported (ptq reads 'gptq' and 'gptq_v2')");
  }
  if (method == "compressed-tensors") {
    const std::string fmt = json_string_field(qc, "format", "", where + ": quantization_config");
    if (fmt != "pack-quantized")
      throw Error(where + ": compressed-tensors format '" + fmt + "' is not supported (ptq reads 'pack-quantized')");
    return &compressed_tensors_layout();
  }
  if (method == "awq") {
    std::string version = json_string_field(qc, "version", "gemm", where + ": quantization_config");
    for (auto& ch : version) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (version != "gemm")
      throw Error(where + ": AWQ version '" + version + "' is not supported (ptq reads 'gemm')");
    return &awq_layout();
  }
  return nullptr;
}

QuantGrid PackedLayout::module_grid(const nlohmann::json& qc, const std::string&, const std::string& where) const {
  return packed::grid_fields(qc, QuantGrid{}, where + ": quantization_config");
}

namespace packed {

QuantGrid grid_fields(const nlohmann::json& j, const QuantGrid& fallback, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": expected an object, found " + describe_json(j));
  QuantGrid g = fallback;
  g.bits = int(json_int_field(j, "bits", g.bits, 1, 32, where));
  g.group_size = int(json_int_field(j, "group_size", g.group_size, INT32_MIN, INT32_MAX, where));
  if (g.group_size <= 0) g.group_size = -1;
  g.sym = json_bool_field(j, "sym", g.sym, where);
  return g;
}

int64_t values_per_word_block(int bits) { return 32 / std::gcd(32, bits); }

std::string marlin_ineligibility(const GridCodes& q, bool zero_points) {
  const QuantGrid& g = q.grid;
  const std::string no = "not eligible for Marlin: ";
  if (zero_points ? g.bits != 4 : g.bits != 4 && g.bits != 8)
    return no + std::to_string(g.bits) + "-bit" + (zero_points ? " with zero points (4-bit only)" : " (4 or 8-bit only)");
  const int gs = g.group_size <= 0 ? -1 : g.group_size;
  if (gs != -1 && gs != 32 && gs != 64 && gs != 128)
    return no + "group_size " + std::to_string(gs) + " (-1, 32, 64 or 128 only)";
  if (q.rows % 64 != 0) return no + "out_features " + std::to_string(q.rows) + " not a multiple of 64";
  if (q.cols % 128 != 0) return no + "in_features " + std::to_string(q.cols) + " not a multiple of 128";
  return "";
}

std::vector<uint8_t> i32_bytes(const std::vector<uint32_t>& words) {
  std::vector<uint8_t> out(words.size() * 4);
  if (!words.empty()) std::memcpy(out.data(), words.data(), out.size());
  return out;
}

std::vector<uint32_t> words_of(const PackedBuffer& b) {
  PTQ_ASSERT(b.bytes.size() % 4 == 0, "int32 buffer has whole words");
  std::vector<uint32_t> w(b.bytes.size() / 4);
  if (!w.empty()) std::memcpy(w.data(), b.bytes.data(), b.bytes.size());
  return w;
}

PackedBuffer f16_buffer(const std::vector<float>& values, std::vector<int64_t> shape) {
  PackedBuffer b{DType::F16, std::move(shape), std::vector<uint8_t>(values.size() * 2)};
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = f32_to_f16(values[i]);
    std::memcpy(&b.bytes[2 * i], &h, 2);
  }
  return b;
}

// The values of a 16-bit float buffer, each decoded by `decode` (fp16 or bf16).
static std::vector<float> half_values(const PackedBuffer& b, float (*decode)(uint16_t)) {
  std::vector<float> v(b.bytes.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, &b.bytes[2 * i], 2);
    v[i] = decode(h);
  }
  return v;
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

const PackedBuffer& expect(const std::string& where, const PackedLayer& layer, const std::string& suffix,
                           DType dtype, const std::vector<int64_t>& shape) {
  auto it = layer.find(suffix);
  if (it == layer.end()) throw Error(where + ": missing tensor '" + suffix + "'");
  const PackedBuffer& b = it->second;
  if (b.dtype != dtype || b.shape != shape)
    throw Error(where + "." + suffix + ": expected " + dtype_name(dtype) + " " + shape_str(shape) +
                ", found " + dtype_name(b.dtype) + " " + shape_str(b.shape));
  return b;
}

std::vector<float> scale_values(const std::string& where, const PackedLayer& layer, const std::string& suffix,
                                const std::vector<int64_t>& shape) {
  auto it = layer.find(suffix);
  const DType dtype = it != layer.end() && it->second.dtype == DType::BF16 ? DType::BF16 : DType::F16;
  return half_values(expect(where, layer, suffix, dtype, shape), dtype == DType::F16 ? f16_to_f32 : bf16_to_f32);
}

uint32_t get_bits(const uint32_t* words, int64_t stride, int64_t count, int64_t index, int bits) {
  const int64_t bit = index * bits, w = bit / 32;
  const int off = int(bit % 32);
  PTQ_ASSERT(w < count, "bit stream read past its last word");
  uint64_t both = words[w * stride];
  if (w + 1 < count) both |= uint64_t(words[(w + 1) * stride]) << 32;
  return uint32_t(both >> off) & ((1u << bits) - 1);
}

void put_bits(uint32_t* words, int64_t stride, int64_t count, int64_t index, int bits, uint32_t v) {
  const int64_t bit = index * bits, w = bit / 32;
  const int off = int(bit % 32);
  PTQ_ASSERT(w < count && v < (1u << bits), "bit stream write out of range");
  const uint64_t shifted = uint64_t(v) << off;
  words[w * stride] |= uint32_t(shifted);
  if (shifted >> 32) {
    PTQ_ASSERT(w + 1 < count, "value straddles past the last word");
    words[(w + 1) * stride] |= uint32_t(shifted >> 32);
  }
}

}  // namespace packed
}  // namespace ptq
