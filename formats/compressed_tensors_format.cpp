// compressed-tensors "pack-quantized" layout (llm-compressor's W4A16/W8A16 output, read by the
// compressed-tensors package, transformers and vLLM), registered as output format
// "compressed-tensors". Per quantized linear layer with W [N out, K in], b bits,
// G = K / group_size groups (1 when per-channel); packing as compressed-tensors 0.20.1 does it:
//
//   <module>.weight_packed      I32 [N, ceil(K·b/32)]   bytes 4·N·ceil(K·b/32)
//   <module>.weight_scale       F16 [N, G]              bytes 2·N·G
//   <module>.weight_zero_point  I32 [ceil(N·b/32), G]   bytes 4·ceil(N·b/32)·G   (asymmetric only)
//   <module>.weight_shape       I64 [2]                 bytes 16                 = [N, K]
//
// weight_packed: row n is one dense little-endian bit stream over its words: the value of input
// k sits at stream bits [k·b, k·b + b), least significant bit first, and may straddle two words
// (b = 3, 5, 6, 7); bits past K·b are 0. Values are stored unsigned: compressed-tensors' signed
// code q ∈ [−2^(b−1), 2^(b−1)) plus 2^(b−1), which is ptq's code itself.
// weight_zero_point: column g is one such stream along N (the packing runs down dim 0), holding
// ptq's zero point (compressed-tensors' signed zero point plus 2^(b−1)).
// w[n, k] = weight_scale[n, g] · (code[n, k] − zero[n, g]) with g = k / group_size; symmetric
// layers store no zero point and decode with zero = 2^(b−1) (signed zero point 0).
// Groups run in natural column order: compressed-tensors removed activation-ordered groups
// (actorder "group", weight_g_idx), so act-order layers must keep static groups.
#include <cstring>

#include "formats/checkpoint_writer.h"
#include "formats/format_rows.h"
#include "formats/packed_checkpoint.h"
#include "formats/packed_layout.h"
#include "ptq/error.h"
#include "ptq/json_read.h"

namespace ptq {
namespace {

using json = nlohmann::json;

constexpr const char* kCompressedTensorsVersion = "0.20.1";  // the packing this file follows

int64_t stream_words(int64_t values, int bits) { return (values * bits + 31) / 32; }

class CompressedTensorsLayout final : public PackedLayout {
 public:
  std::string name() const override { return "compressed-tensors"; }

  std::string grid_refusal(int, int cols, const QuantGrid& g) const override {
    if (g.bits < 2 || g.bits > 8)
      return "compressed-tensors packs 2 to 8-bit integers, not " + std::to_string(g.bits) + "-bit";
    if (g.group_size > 0 && g.group_size < cols && cols % g.group_size != 0)
      return "compressed-tensors needs in_features (" + std::to_string(cols) + ") divisible by group_size " +
             std::to_string(g.group_size) + "; use a group size that divides it, or g0 (per channel)";
    return "";
  }

  std::string codes_refusal(const GridCodes& q) const override {
    if (!natural_g_idx(q))
      return "compressed-tensors has no g_idx (activation-ordered groups were removed from it), so it cannot "
             "hold act-order groups; quantize with act_order,static_groups or without act_order";
    return "";
  }

  PackedLayer pack(const GridCodes& q) const override {
    const int b = q.grid.bits, n = q.rows, k = q.cols, groups = int(q.scales.cols());
    const int64_t row_words = stream_words(k, b), zero_words = stream_words(n, b);
    std::vector<uint32_t> packed(size_t(n) * row_words, 0);
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < k; ++c)
        packed::put_bits(&packed[size_t(r) * row_words], 1, row_words, c, b, q.q[size_t(r) * k + c]);
    std::vector<float> scales(size_t(n) * groups);
    for (int r = 0; r < n; ++r)
      for (int g = 0; g < groups; ++g) scales[size_t(r) * groups + g] = q.scales(r, g);
    PackedLayer out;
    out["weight_packed"] = {DType::I32, {n, row_words}, packed::i32_bytes(packed)};
    out["weight_scale"] = packed::f16_buffer(scales, {n, groups});
    if (!q.grid.sym) {
      std::vector<uint32_t> zeros(size_t(zero_words) * groups, 0);
      for (int g = 0; g < groups; ++g)
        for (int r = 0; r < n; ++r) packed::put_bits(&zeros[g], groups, zero_words, r, b, uint32_t(q.zeros(r, g)));
      out["weight_zero_point"] = {DType::I32, {zero_words, groups}, packed::i32_bytes(zeros)};
    }
    std::vector<uint8_t> shape(16);
    const int64_t dims[2] = {n, k};
    std::memcpy(shape.data(), dims, 16);
    out["weight_shape"] = {DType::I64, {2}, shape};
    return out;
  }

  GridCodes unpack(const std::string& where, const PackedLayer& layer, int n, int k,
                   const QuantGrid& grid) const override {
    if (const std::string why = grid_refusal(n, k, grid); !why.empty()) throw Error(where + ": " + why);
    const int b = grid.bits, groups = grid.num_groups(k);
    const int64_t row_words = stream_words(k, b), zero_words = stream_words(n, b);
    auto packed = packed::words_of(packed::expect(where, layer, "weight_packed", DType::I32, {n, row_words}));
    auto scales = packed::scale_values(where, layer, "weight_scale", {n, groups});
    check_shape(where, layer, n, k);
    GridCodes q;
    q.rows = n;
    q.cols = k;
    q.grid = grid;
    q.g_idx.resize(k);
    for (int c = 0; c < k; ++c) q.g_idx[c] = grid.group_size <= 0 ? 0 : c / grid.group_size;
    q.q.resize(size_t(n) * k);
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < k; ++c)
        q.q[size_t(r) * k + c] = uint8_t(packed::get_bits(&packed[size_t(r) * row_words], 1, row_words, c, b));
    q.scales.resize(n, groups);
    q.zeros.resize(n, groups);
    std::vector<uint32_t> zeros;
    if (!grid.sym)
      zeros = packed::words_of(packed::expect(where, layer, "weight_zero_point", DType::I32, {zero_words, groups}));
    for (int r = 0; r < n; ++r)
      for (int g = 0; g < groups; ++g) {
        q.scales(r, g) = scales[size_t(r) * groups + g];
        q.zeros(r, g) = grid.sym ? float(1 << (b - 1)) : float(packed::get_bits(&zeros[g], groups, zero_words, r, b));
      }
    return q;
  }

  json quantization_config(const QuantGrid& g, bool) const override {
    return {{"quant_method", "compressed-tensors"},
            {"format", "pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weight_args(g)},
                                            {"input_activations", nullptr}, {"output_activations", nullptr},
                                            {"format", "pack-quantized"}}}}},
            {"ignore", json::array()},
            {"kv_cache_scheme", nullptr},
            {"global_compression_ratio", nullptr},
            {"sparsity_config", json::object()},
            {"version", kCompressedTensorsVersion}};
  }

  void complete_config(json& qc, const std::vector<std::string>& fp_linears) const override {
    qc["ignore"] = fp_linears;
  }

  // vLLM serves pack-quantized weights through its WNA16 kernels, which take 4 and 8 bits.
  std::vector<std::string> engine_refusals(const GridCodes& q) const override {
    std::vector<std::string> why;
    if (q.grid.bits != 4 && q.grid.bits != 8)
      why.push_back("vLLM compressed-tensors: " + std::to_string(q.grid.bits) + "-bit weights (4 or 8 only)");
    if (const std::string m = packed::marlin_ineligibility(q, /*zero_points=*/!q.grid.sym); !m.empty())
      why.push_back(m + "; vLLM picks a slower kernel");
    return why;
  }

  std::vector<std::string> buffer_suffixes() const override {
    return {"weight_packed", "weight_scale", "weight_zero_point", "weight_shape"};
  }

  // The weights arguments of the first config group whose targets name `module` exactly or as
  // "Linear".
  QuantGrid module_grid(const json& qc, const std::string& module, const std::string& where) const override {
    const std::string at = where + ": quantization_config.config_groups";
    const auto groups = qc.find("config_groups");
    if (groups == qc.end() || !groups->is_object()) throw Error(at + ": expected an object");
    for (const auto& [name, group] : groups->items()) {
      if (!group.is_object() || !group.contains("targets") || !group["targets"].is_array())
        throw Error(at + "." + name + ": expected an object with a targets array");
      for (const auto& t : group["targets"]) {
        if (!t.is_string()) throw Error(at + "." + name + ".targets: expected strings, found " + describe_json(t));
        if (targets(t.get<std::string>(), module)) return grid_of(group, at + "." + name);
      }
    }
    throw Error(at + ": no group targets " + module + " by name or as \"Linear\" (ptq does not match \"re:\" targets)");
  }

 private:
  static json weight_args(const QuantGrid& g) {
    const bool channel = g.group_size <= 0;
    return {{"num_bits", g.bits}, {"type", "int"}, {"symmetric", g.sym},
            {"group_size", channel ? json(nullptr) : json(g.group_size)},
            {"strategy", channel ? "channel" : "group"}, {"block_structure", nullptr}, {"dynamic", false},
            {"actorder", nullptr}, {"observer", "minmax"}, {"observer_kwargs", json::object()}};
  }

  // Regex targets ("re:...") are not matched: std::regex recurses per character, so a hostile
  // pattern could exhaust the stack, and ptq writes exact names or "Linear" only.
  static bool targets(const std::string& target, const std::string& module) {
    return target == "Linear" || target == module;
  }

  static QuantGrid grid_of(const json& group, const std::string& where) {
    const auto w = group.find("weights");
    if (w == group.end() || !w->is_object()) throw Error(where + ".weights: expected an object");
    const std::string at = where + ".weights";
    if (json_string_field(*w, "type", "int", at) != "int")
      throw Error(at + ": type must be 'int' (ptq reads integer pack-quantized weights)");
    QuantGrid g;
    g.bits = int(json_int_field(*w, "num_bits", 8, 2, 8, at));
    g.sym = json_bool_field(*w, "symmetric", true, at);
    const std::string strategy = json_string_field(*w, "strategy", "", at);
    if (strategy == "channel") g.group_size = -1;
    else if (strategy == "group") g.group_size = int(json_int_field(*w, "group_size", 0, 1, INT32_MAX, at));
    else throw Error(at + ": strategy '" + strategy + "' is not supported (ptq reads 'group' and 'channel')");
    return g;
  }

  static void check_shape(const std::string& where, const PackedLayer& layer, int n, int k) {
    const auto it = layer.find("weight_shape");
    if (it == layer.end()) return;
    if (it->second.shape != std::vector<int64_t>{2} || (it->second.dtype != DType::I64 && it->second.dtype != DType::I32))
      throw Error(where + ".weight_shape: expected 2 integers");
    int64_t dims[2];
    if (it->second.dtype == DType::I64) {
      std::memcpy(dims, it->second.bytes.data(), 16);
    } else {
      int32_t d32[2];
      std::memcpy(d32, it->second.bytes.data(), 8);
      dims[0] = d32[0];
      dims[1] = d32[1];
    }
    if (dims[0] != n || dims[1] != k)
      throw Error(where + ".weight_shape: is [" + std::to_string(dims[0]) + ", " + std::to_string(dims[1]) +
                  "] but the architecture needs [" + std::to_string(n) + ", " + std::to_string(k) + "]");
  }
};

}  // namespace

const PackedLayout& compressed_tensors_layout() {
  static const CompressedTensorsLayout layout;
  return layout;
}

FormatTraits format_rows::compressed_tensors() {
  GridConstraints c;
  c.fp16_statistics = true;  // weight_scale is fp16: the quantizers fit exactly what clients decode
  return {FormatId::kCompressedTensors,
          "compressed-tensors",
          "compressed-tensors pack-quantized int codes, fp16 group scales, packed zero points (llm-compressor/"
          "transformers/vLLM)",
          c,
          [](int rows, int cols, const QuantGrid& g) { return compressed_tensors_layout().grid_refusal(rows, cols, g); },
          [](const QuantizedLayer& layer) { return packed_layer_refusal(compressed_tensors_layout(), layer); },
          [](const Spec&) { return make_packed_writer(format_traits("compressed-tensors"), compressed_tensors_layout()); },
          [](const json& qc) {
            if (!qc.is_object() || qc.value("quant_method", std::string()) != "compressed-tensors") return false;
            const auto f = qc.find("format");
            return f != qc.end() && f->is_string() && f->get<std::string>() == "pack-quantized";
          },
          read_packed_layers,
          nullptr};
}

}  // namespace ptq
