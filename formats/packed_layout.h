#pragma once
// What a packed checkpoint layout (GPTQ v1, AWQ GEMM) provides: turning one GridCodes into
// its named int32/fp16 buffers and back, the HF `quantization_config`, and the alignment rules
// that serving engines apply. docs/formats.md describes each layout byte by byte.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ptq/quantized_layer.h"
#include "ptq/tensor.h"

namespace ptq {

// One tensor of a packed layer, e.g. suffix "qweight" for `<module>.qweight`.
struct PackedBuffer {
  DType dtype = DType::I32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian, row-major
};
using PackedLayer = std::map<std::string, PackedBuffer>;  // by suffix

class PackedLayout {
 public:
  virtual ~PackedLayout() = default;
  virtual std::string name() const = 0;  // the output format name: "gptq", "awq"
  // "" when the layout can hold a layer of this shape and grid, else why not.
  virtual std::string grid_refusal(int rows, int cols, const QuantGrid& g) const = 0;
  // "" when the layout can hold these codes (zero points, g_idx), else why not. The layouts store
  // only a dense grid with integer zero points; other parts are refused by packed_layer_refusal.
  virtual std::string codes_refusal(const GridCodes& q) const { return ""; }
  // Packs a grid that grid_refusal and codes_refusal accept.
  virtual PackedLayer pack(const GridCodes& q) const = 0;
  // `where` names the file and module in errors. rows/cols are the true [N, K].
  virtual GridCodes unpack(const std::string& where, const PackedLayer& layer, int rows, int cols,
                                 const QuantGrid& g) const = 0;
  // The HF quantization_config for layers quantized with `g` (desc_act: any g_idx permuted).
  virtual nlohmann::json quantization_config(const QuantGrid& g, bool desc_act) const = 0;
  // Why serving engines would refuse or misread this layer (empty when none would).
  virtual std::vector<std::string> engine_refusals(const GridCodes& q) const = 0;
  // The tensor suffixes of one packed layer; a module holding the first is packed.
  virtual std::vector<std::string> buffer_suffixes() const { return {"qweight", "qzeros", "scales", "g_idx"}; }
  // The grid quantization_config gives `module` (before ptq's own per-layer entries); `where`
  // names config.json in errors. By default the config's bits, group_size and sym.
  virtual QuantGrid module_grid(const nlohmann::json& qc, const std::string& module, const std::string& where) const;
  // Adds what the config needs to know of the model: the linear modules kept in full precision.
  virtual void complete_config(nlohmann::json& qc, const std::vector<std::string>& fp_linears) const {}
};

const PackedLayout& gptq_layout();
const PackedLayout& gptq_v2_layout();
const PackedLayout& awq_layout();
const PackedLayout& compressed_tensors_layout();
// The layout a config.json's quantization_config names; nullptr when it names none ptq reads.
// Throws Error (naming `where`) for a quant_method ptq knows but a variant it does not read.
const PackedLayout* layout_for_config(const nlohmann::json& quant_config, const std::string& where);

// True when g_idx[c] == c / group_size for every column (no act-order permutation).
bool natural_g_idx(const GridCodes& q);

// Why `layout` cannot store `layer` ("" when it can): any part besides the dense grid, zero
// points that are not integers on the grid, and the layout's own grid and codes rules.
std::string packed_layer_refusal(const PackedLayout& layout, const QuantizedLayer& layer);

// Helpers shared by the layouts.
namespace packed {
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// How many values of `bits` fill a whole number of 32-bit words: 16, 32, 8, 4 for 2, 3, 4, 8.
int64_t values_per_word_block(int bits);
std::vector<uint8_t> i32_bytes(const std::vector<uint32_t>& words);
std::vector<uint32_t> words_of(const PackedBuffer& b);
PackedBuffer f16_buffer(const std::vector<float>& values, std::vector<int64_t> shape);
// A scale buffer of this shape as floats: F16 as ptq writes it, or BF16 as GPTQModel and
// llm-compressor write it for bf16 models. Throws Error naming `where` + suffix otherwise.
std::vector<float> scale_values(const std::string& where, const PackedLayer& layer, const std::string& suffix,
                                const std::vector<int64_t>& shape);
// Throws Error naming `where` + suffix unless the buffer exists with this dtype and shape.
const PackedBuffer& expect(const std::string& where, const PackedLayer& layer, const std::string& suffix,
                           DType dtype, const std::vector<int64_t>& shape);
// "" when vLLM's Marlin kernels (gptq_marlin, awq_marlin) can serve the layer, else the first
// rule it breaks: 4 or 8 bits (4 only with zero points), group −1/32/64/128, out_features a
// multiple of 64 and in_features of 128 (marlin_utils.py).
std::string marlin_ineligibility(const GridCodes& q, bool zero_points);
// bits, group_size (≤ 0: per channel, −1) and sym of a quantization_config object (or one of
// its ptq.layers entries), each defaulting to `fallback`'s; `where` names the object in errors.
QuantGrid grid_fields(const nlohmann::json& j, const QuantGrid& fallback, const std::string& where);
// Value `index` of `bits` in an LSB-first bit stream laid over words[0], words[stride], ...
// (`count` words in the stream); a value may straddle two words.
uint32_t get_bits(const uint32_t* words, int64_t stride, int64_t count, int64_t index, int bits);
void put_bits(uint32_t* words, int64_t stride, int64_t count, int64_t index, int bits, uint32_t v);
}  // namespace packed

}  // namespace ptq
