// GPTQ packed layouts, v1 ("gptq" checkpoint_format of AutoGPTQ / GPTQModel, read by
// transformers, optimum and vLLM) and v2 (GPTQModel's "gptq_v2"), registered as output formats
// "gptq" and "gptq_v2". Per quantized linear layer with W [N out, K in], b bits,
// G = ceil(K / group_size) groups (1 when per-channel):
//
//   <module>.qweight  I32 [Kp·b/32, N]  bytes 4·(Kp·b/32)·N   Kp = K rounded up to V(b)
//   <module>.qzeros   I32 [G, Np·b/32]  bytes 4·G·(Np·b/32)   Np = N rounded up to V(b)
//   <module>.scales   F16 [G, N]        bytes 2·G·N
//   <module>.g_idx    I32 [K]           bytes 4·K
//
// V(b) = 32 / gcd(32, b) values fill whole words: 16, 32, 8, 4 for b = 2, 3, 4, 8.
// qweight: column n of qweight is one little-endian bit stream over its words (row 0 first);
// code of input k sits at stream bits [k·b, k·b + b), least significant bit first. For b = 3 a
// value may straddle two words (values 10 and 21 of every 32), which is exactly what AutoGPTQ's
// packer produces (3 words hold 32 values). Padded inputs k ≥ K hold code 0.
// qzeros: row g is one bit stream over its words in the same way; padded entries n ≥ N hold 0.
//   v1: entry n = zero − 1. Readers outside ptq add 1 without wrapping, so v1 cannot hold a zero
//       point of 0: the format's GridConstraints (min_zero = 1) make every quantizer fit
//       asymmetric zeros in [1, 2^b − 1], and a layer with a zero of 0 is refused.
//   v2: entry n = zero, any value in [0, 2^b − 1].
// scales[g, n] = fp16 of the quantizer's fp32 scale; g_idx[k] = group of input k (act-order
// permutes it). w[n, k] = scales[g, n] · (code[n, k] − zero[g, n]) with g = g_idx[k].
#include <numeric>

#include "formats/checkpoint_writer.h"
#include "formats/format_rows.h"
#include "formats/packed_checkpoint.h"
#include "formats/packed_layout.h"
#include "ptq/error.h"

namespace ptq {
namespace {

using packed::round_up;
using packed::values_per_word_block;

class GptqLayout final : public PackedLayout {
 public:
  explicit GptqLayout(bool v2) : v2_(v2) {}
  std::string name() const override { return v2_ ? "gptq_v2" : "gptq"; }

  std::string grid_refusal(int, int, const QuantGrid& g) const override {
    if (g.bits != 2 && g.bits != 3 && g.bits != 4 && g.bits != 8)
      return "the gptq format packs 2, 3, 4 or 8-bit weights, not " + std::to_string(g.bits) + "-bit";
    return "";
  }

  std::string codes_refusal(const GridCodes& q) const override {
    if (v2_) return "";
    int zeros_at_0 = 0;
    for (Eigen::Index i = 0; i < q.zeros.size(); ++i) zeros_at_0 += q.zeros.data()[i] == 0.0f;
    if (zeros_at_0 == 0) return "";
    return std::to_string(zeros_at_0) + " zero points are 0, which GPTQ v1 stores as −1 and readers outside "
           "ptq decode as " + std::to_string(q.grid.max_q() + 1) + "; write --format gptq_v2";
  }

  PackedLayer pack(const GridCodes& q) const override {
    const int b = q.grid.bits, n = q.rows, k = q.cols, groups = int(q.scales.cols());
    const int64_t vb = values_per_word_block(b);
    const int64_t w_rows = round_up(k, vb) * b / 32, z_cols = round_up(n, vb) * b / 32;
    const uint32_t mask = (1u << b) - 1;
    std::vector<uint32_t> qweight(size_t(w_rows) * n, 0), qzeros(size_t(groups) * z_cols, 0);
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < k; ++c) packed::put_bits(&qweight[r], n, w_rows, c, b, q.q[size_t(r) * k + c]);
    std::vector<float> scales(size_t(groups) * n);
    for (int g = 0; g < groups; ++g) {
      for (int r = 0; r < n; ++r) {
        const uint32_t zero = uint32_t(q.zeros(r, g));  // integers on the grid: packed_layer_refusal
        packed::put_bits(&qzeros[size_t(g) * z_cols], 1, z_cols, r, b, v2_ ? zero : (zero - 1) & mask);
        scales[size_t(g) * n + r] = q.scales(r, g);
      }
    }
    std::vector<uint32_t> g_idx(q.g_idx.begin(), q.g_idx.end());
    PackedLayer out;
    out["qweight"] = {DType::I32, {w_rows, n}, packed::i32_bytes(qweight)};
    out["qzeros"] = {DType::I32, {groups, z_cols}, packed::i32_bytes(qzeros)};
    out["scales"] = packed::f16_buffer(scales, {groups, n});
    out["g_idx"] = {DType::I32, {k}, packed::i32_bytes(g_idx)};
    return out;
  }

  GridCodes unpack(const std::string& where, const PackedLayer& layer, int n, int k,
                         const QuantGrid& grid) const override {
    if (const std::string why = grid_refusal(n, k, grid); !why.empty()) throw Error(where + ": " + why);
    const int b = grid.bits, groups = grid.num_groups(k);
    const int64_t vb = values_per_word_block(b);
    const int64_t w_rows = round_up(k, vb) * b / 32, z_cols = round_up(n, vb) * b / 32;
    const uint32_t mask = (1u << b) - 1;
    auto qweight = packed::words_of(packed::expect(where, layer, "qweight", DType::I32, {w_rows, n}));
    auto qzeros = packed::words_of(packed::expect(where, layer, "qzeros", DType::I32, {groups, z_cols}));
    auto scales = packed::scale_values(where, layer, "scales", {groups, n});
    GridCodes q;
    q.rows = n;
    q.cols = k;
    q.grid = grid;
    q.g_idx.resize(k);
    if (layer.count("g_idx")) {
      auto g_idx = packed::words_of(packed::expect(where, layer, "g_idx", DType::I32, {k}));
      for (int c = 0; c < k; ++c) {
        if (int32_t(g_idx[c]) < 0 || int32_t(g_idx[c]) >= groups)
          throw Error(where + ".g_idx: entry " + std::to_string(c) + " is " + std::to_string(int32_t(g_idx[c])) +
                      ", expected a group in [0, " + std::to_string(groups) + ")");
        q.g_idx[c] = int32_t(g_idx[c]);
      }
    } else {  // older AutoGPTQ files without act-order may omit g_idx
      for (int c = 0; c < k; ++c) q.g_idx[c] = grid.group_size <= 0 ? 0 : c / grid.group_size;
    }
    q.q.resize(size_t(n) * k);
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < k; ++c) q.q[size_t(r) * k + c] = uint8_t(packed::get_bits(&qweight[r], n, w_rows, c, b));
    q.scales.resize(n, groups);
    q.zeros.resize(n, groups);
    for (int g = 0; g < groups; ++g) {
      for (int r = 0; r < n; ++r) {
        const uint32_t stored = packed::get_bits(&qzeros[size_t(g) * z_cols], 1, z_cols, r, b);
        q.zeros(r, g) = float(v2_ ? stored : (stored + 1) & mask);
        q.scales(r, g) = scales[size_t(g) * n + r];
      }
    }
    return q;
  }

  nlohmann::json quantization_config(const QuantGrid& g, bool desc_act) const override {
    return {{"quant_method", "gptq"}, {"checkpoint_format", name()}, {"bits", g.bits},
            {"group_size", g.group_size <= 0 ? -1 : g.group_size}, {"desc_act", desc_act},
            {"sym", g.sym}, {"static_groups", false}, {"lm_head", false}};
  }

  // vLLM's GPTQ linear method (gptq.py create_weights) raises unless K % group_size == 0 and
  // N % (32 / gcd(32, b)) == 0, and so do the torch kernels transformers and GPTQModel run on CPU
  // for K % group_size; padded buffers never match the shapes an engine derives from config.json.
  std::vector<std::string> engine_refusals(const GridCodes& q) const override {
    const int n = q.rows, k = q.cols;
    const QuantGrid& g = q.grid;
    std::vector<std::string> why;
    const int64_t vb = values_per_word_block(g.bits);
    if (g.group_size > 0 && k % g.group_size != 0)
      why.push_back("in_features " + std::to_string(k) + " not divisible by group_size " + std::to_string(g.group_size) +
                    ": vLLM gptq and transformers/GPTQModel's torch kernels refuse the layer");
    if (const int gs = g.group_size; gs > 0 && (gs < 16 || gs > 1024 || (gs & (gs - 1)) != 0))
      why.push_back("group_size " + std::to_string(gs) + ": GPTQModel's torch kernels (transformers on CPU) take -1 or "
                    "a power of two from 16 to 1024");
    if (k % vb != 0)
      why.push_back("qweight padded: in_features " + std::to_string(k) + " not a multiple of " + std::to_string(vb) +
                    " (" + std::to_string(g.bits) + "-bit values per whole words): engines that size qweight from "
                    "config.json refuse the layer");
    if (n % vb != 0)
      why.push_back("vLLM gptq: out_features " + std::to_string(n) + " not divisible by " + std::to_string(vb) +
                    " (qzeros padded)");
    if (const std::string m = packed::marlin_ineligibility(q, /*zero_points=*/!g.sym); !m.empty())
      why.push_back(m + "; vLLM uses its gptq kernel instead");
    return why;
  }

 private:
  bool v2_;
};

std::string checkpoint_format_of(const nlohmann::json& qc) {
  const auto it = qc.find("checkpoint_format");
  return it != qc.end() && it->is_string() ? it->get<std::string>() : "gptq";
}

}  // namespace

const PackedLayout& gptq_layout() {
  static const GptqLayout layout(false);
  return layout;
}

const PackedLayout& gptq_v2_layout() {
  static const GptqLayout layout(true);
  return layout;
}

FormatTraits format_rows::gptq() {
  GridConstraints v1;
  v1.min_zero = 1;
  return {FormatId::kGptq,
          "gptq",
          "GPTQ v1 packed int32 codes, fp16 scales, packed zeros − 1 and g_idx (AutoGPTQ/GPTQModel/transformers/vLLM)",
          v1,
          [](int rows, int cols, const QuantGrid& g) { return gptq_layout().grid_refusal(rows, cols, g); },
          [](const QuantizedLayer& layer) { return packed_layer_refusal(gptq_layout(), layer); },
          [](const Spec&) { return make_packed_writer(format_traits("gptq"), gptq_layout()); },
          [](const nlohmann::json& qc) {
            return qc.is_object() && qc.value("quant_method", std::string()) == "gptq" && checkpoint_format_of(qc) == "gptq";
          },
          read_packed_layers,
          nullptr};
}

FormatTraits format_rows::gptq_v2() {
  return {FormatId::kGptqV2,
          "gptq_v2",
          "GPTQ v2 (GPTQModel): the gptq layout with zero points stored as they are, so asymmetric zeros of 0 are exact",
          {},
          [](int rows, int cols, const QuantGrid& g) { return gptq_v2_layout().grid_refusal(rows, cols, g); },
          [](const QuantizedLayer& layer) { return packed_layer_refusal(gptq_v2_layout(), layer); },
          [](const Spec&) { return make_packed_writer(format_traits("gptq_v2"), gptq_v2_layout()); },
          [](const nlohmann::json& qc) {
            return qc.is_object() && qc.value("quant_method", std::string()) == "gptq" &&
                   checkpoint_format_of(qc) == "gptq_v2";
          },
          read_packed_layers,
          nullptr};
}

}  // namespace ptq
