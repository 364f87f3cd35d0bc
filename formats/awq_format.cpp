// AWQ GEMM packed layout (AutoAWQ WQLinear_GEMM, read by transformers and vLLM "awq"),
// registered as output format "awq". 4-bit only, no g_idx (groups run in natural column order).
// Per quantized linear layer with W [N out, K in], G = ceil(K / group_size) (1 when per-channel),
// Np = N rounded up to a multiple of 8:
//
//   <module>.qweight  I32 [K, Np/8]  bytes 4·K·Np/8
//   <module>.qzeros   I32 [G, Np/8]  bytes 4·G·Np/8
//   <module>.scales   F16 [G, N]     bytes 2·G·N
//
// qweight[k, j] holds the codes of outputs 8j..8j+7 for input k: nibble i (bits 4i..4i+3) holds
// output 8j + kOrder[i] with kOrder = [0, 2, 4, 6, 1, 3, 5, 7] (AutoAWQ's interleave, chosen for
// its dequantization kernel). qzeros[g, j] packs zero[g, 8j..8j+7] the same way, stored as is
// (no −1). Padded outputs n ≥ N hold 0. w[n, k] = scales[g, n] · (code − zero) with g = k / group.
#include "formats/checkpoint_writer.h"
#include "formats/format_rows.h"
#include "formats/packed_checkpoint.h"
#include "formats/packed_layout.h"
#include "ptq/error.h"

namespace ptq {
namespace {

using packed::round_up;

constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // nibble i holds output 8j + kOrder[i]

// Packs row-major values [rows, n] (n outputs per row) into [rows, np/8] words.
std::vector<uint32_t> pack_rows(const std::vector<uint32_t>& v, int64_t rows, int64_t n) {
  const int64_t words = round_up(n, 8) / 8;
  std::vector<uint32_t> out(size_t(rows * words), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < words; ++j)
      for (int i = 0; i < 8; ++i) {
        const int64_t col = 8 * j + kOrder[i];
        if (col < n) out[size_t(r * words + j)] |= (v[size_t(r * n + col)] & 0xFu) << (4 * i);
      }
  return out;
}

uint32_t unpack_at(const std::vector<uint32_t>& words, int64_t row, int64_t words_per_row, int64_t col) {
  const int64_t j = col / 8;
  int nibble = 0;
  while (kOrder[nibble] != col % 8) ++nibble;
  return (words[size_t(row * words_per_row + j)] >> (4 * nibble)) & 0xFu;
}

class AwqLayout final : public PackedLayout {
 public:
  std::string name() const override { return "awq"; }

  std::string grid_refusal(int, int, const QuantGrid& g) const override {
    if (g.bits != 4)
      return "the awq (GEMM) format packs only 4-bit weights, not " + std::to_string(g.bits) + "-bit; use --format gptq";
    return "";
  }

  std::string codes_refusal(const GridCodes& q) const override {
    if (!natural_g_idx(q))
      return "the awq format has no g_idx, so it cannot hold act-order groups (g_idx[c] must be "
             "c / group_size); quantize without act_order or use --format gptq";
    return "";
  }

  PackedLayer pack(const GridCodes& q) const override {
    const int n = q.rows, k = q.cols, groups = int(q.scales.cols());
    const int64_t words = round_up(n, 8) / 8;
    std::vector<uint32_t> codes(size_t(k) * n), zeros(size_t(groups) * n);
    std::vector<float> scales(size_t(groups) * n);
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < k; ++c) codes[size_t(c) * n + r] = q.q[size_t(r) * k + c];
    for (int g = 0; g < groups; ++g)
      for (int r = 0; r < n; ++r) {
        zeros[size_t(g) * n + r] = uint32_t(q.zeros(r, g));
        scales[size_t(g) * n + r] = q.scales(r, g);
      }
    PackedLayer out;
    out["qweight"] = {DType::I32, {k, words}, packed::i32_bytes(pack_rows(codes, k, n))};
    out["qzeros"] = {DType::I32, {groups, words}, packed::i32_bytes(pack_rows(zeros, groups, n))};
    out["scales"] = packed::f16_buffer(scales, {groups, n});
    return out;
  }

  GridCodes unpack(const std::string& where, const PackedLayer& layer, int n, int k,
                         const QuantGrid& grid) const override {
    if (const std::string why = grid_refusal(n, k, grid); !why.empty()) throw Error(where + ": " + why);
    const int groups = grid.num_groups(k);
    const int64_t words = round_up(n, 8) / 8;
    auto qweight = packed::words_of(packed::expect(where, layer, "qweight", DType::I32, {k, words}));
    auto qzeros = packed::words_of(packed::expect(where, layer, "qzeros", DType::I32, {groups, words}));
    auto scales = packed::scale_values(where, layer, "scales", {groups, n});
    GridCodes q;
    q.rows = n;
    q.cols = k;
    q.grid = grid;
    q.g_idx.resize(k);
    for (int c = 0; c < k; ++c) q.g_idx[c] = grid.group_size <= 0 ? 0 : c / grid.group_size;
    q.q.resize(size_t(n) * k);
    for (int c = 0; c < k; ++c)
      for (int r = 0; r < n; ++r) q.q[size_t(r) * k + c] = uint8_t(unpack_at(qweight, c, words, r));
    q.scales.resize(n, groups);
    q.zeros.resize(n, groups);
    for (int g = 0; g < groups; ++g)
      for (int r = 0; r < n; ++r) {
        q.zeros(r, g) = float(unpack_at(qzeros, g, words, r));
        q.scales(r, g) = scales[size_t(g) * n + r];
      }
    return q;
  }

  nlohmann::json quantization_config(const QuantGrid& g, bool) const override {
    return {{"quant_method", "awq"}, {"version", "gemm"}, {"bits", 4},
            {"group_size", g.group_size <= 0 ? -1 : g.group_size}, {"zero_point", true}};
  }

  // vLLM's AWQ linear method raises unless K % group_size == 0 and N % 8 == 0; AutoAWQ needs a
  // positive group size.
  std::vector<std::string> engine_refusals(const GridCodes& q) const override {
    const int n = q.rows, k = q.cols;
    const QuantGrid& g = q.grid;
    std::vector<std::string> why;
    if (g.group_size <= 0) why.push_back("AutoAWQ/vLLM awq: per-channel (group_size -1) is not supported");
    if (g.group_size > 0 && k % g.group_size != 0)
      why.push_back("vLLM awq: in_features " + std::to_string(k) + " not divisible by group_size " +
                    std::to_string(g.group_size));
    if (n % 8 != 0)
      why.push_back("vLLM awq: out_features " + std::to_string(n) + " not divisible by 8 (qweight/qzeros padded)");
    if (const std::string m = packed::marlin_ineligibility(q, /*zero_points=*/true); !m.empty())
      why.push_back(m + "; vLLM uses its awq kernel instead");
    return why;
  }
};

}  // namespace

const PackedLayout& awq_layout() {
  static const AwqLayout layout;
  return layout;
}

FormatTraits format_rows::awq() {
  return {FormatId::kAwq,
          "awq",
          "AWQ GEMM packed 4-bit codes and zeros, fp16 scales (AutoAWQ/transformers/vLLM)",
          {},
          [](int rows, int cols, const QuantGrid& g) { return awq_layout().grid_refusal(rows, cols, g); },
          [](const QuantizedLayer& layer) { return packed_layer_refusal(awq_layout(), layer); },
          [](const Spec&) { return make_packed_writer(format_traits("awq"), awq_layout()); },
          [](const nlohmann::json& qc) { return qc.is_object() && qc.value("quant_method", std::string()) == "awq"; },
          read_packed_layers,
          nullptr};
}

}  // namespace ptq
