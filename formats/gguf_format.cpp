// GGUF export, output formats "gguf(q8_0)", "gguf(q4_0)", "gguf(q4_1)", "gguf(q5_0)", "gguf(q5_1)":
// one file OUT/model.gguf that llama.cpp loads (architecture llama), its quantized linear layers
// on exactly the block grid llama.cpp decodes, so that GPTQ's and AWQ's error feedback happens on
// the values llama.cpp computes with. File layout: formats/gguf_writer.h; block layouts:
// formats/ggml_blocks.h. Per quantized layer W [N, K] (K a multiple of 32) of type T:
//
//   blk.L.<name>.weight   T   ne {K, N}   bytes N · K/32 · sizeof(block of T)
//
// block b of row n holds columns 32b..32b+31 of row n with the statistics of their group
// (groups are multiples of 32, so a block never straddles two; a larger group repeats them):
// The symmetric types' grids are scaled by each group's signed extreme, as ggml's own quantizers
// scale Q4_0/Q5_0 (QuantGrid::signed_extreme: d = m / −2^(b−1), so m is exact; d may be negative):
//   Q8_0  d = scale,  qs = code − 128                        (w8 sym: value d·(code − 128))
//   Q4_0  d = scale,  nibbles = code                         (w4 sym: value d·(code − 8))
//   Q5_0  d = scale,  5-bit code split into qs / qh          (w5 sym: value d·(code − 16))
//   Q4_1  d = scale, m = offset, nibbles = code              (w4 additive: value d·code + m)
//   Q5_1  d = scale, m = offset, 5-bit code                  (w5 additive)
// d and m are the grid's fp16 statistics, stored bit for bit, so llama.cpp's dequantization of
// every block equals QuantizedLayer::effective_weight() exactly (tests/test_gguf_export.cpp).
// The rows of q_proj and k_proj are stored in llama.cpp's order for its interleaved RoPE
// (convert_hf_to_gguf.py's permute): GGUF row h·hd + 2i + j holds HF row h·hd + j·hd/2 + i.
//
// Everything else keeps the values ptq evaluates: 1-D tensors (norms) as F32; 2-D tensors that
// are not quantized (the embedding, an untied lm_head, skipped layers) as the source stores them:
// a GGUF source's blocks byte for byte, else F16/BF16 when stored so, else F32; tensors a
// transform replaced as F32.
// Metadata: general.* (architecture, name, file_type, quantization_version 2), llama.* hparams,
// tokenizer.ggml.* (the source's GGUF metadata, or a SentencePiece model's pieces) and every ptq.*
// checkpoint metadata string (recipe, calibration provenance, per-layer results).
// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "formats/checkpoint_writer.h"
#include "formats/format_rows.h"
#include "formats/gguf_names.h"
#include "formats/gguf_writer.h"
#include "ptq/error.h"

namespace fs = std::filesystem;

namespace ptq {
namespace {

struct ExportType {
  const char* format_name;  // "gguf(q4_0)"
  const char* type_name;    // "Q4_0", for messages
  GgmlType type;
  int bits;
  bool additive;       // d·code + m (the _1 types) rather than d·(code − 2^(bits−1))
  uint32_t file_type;  // general.file_type (llama.cpp's LLAMA_FTYPE_MOSTLY_*)
};

constexpr ExportType kTypes[] = {
    {"gguf(q8_0)", "Q8_0", GgmlType::Q8_0, 8, false, 7},
    {"gguf(q4_0)", "Q4_0", GgmlType::Q4_0, 4, false, 2},
    {"gguf(q4_1)", "Q4_1", GgmlType::Q4_1, 4, true, 3},
    {"gguf(q5_0)", "Q5_0", GgmlType::Q5_0, 5, false, 8},
    {"gguf(q5_1)", "Q5_1", GgmlType::Q5_1, 5, true, 9},
};

// The grid a type decodes, as a spec would say it.
std::string grid_words(const ExportType& t) {
  return "w" + std::to_string(t.bits) + (t.additive ? "" : ",sym") + " with groups of 32 (or a multiple)";
}

std::string grid_refusal(const ExportType& t, int, int cols, const QuantGrid& g) {
  const std::string fmt = t.format_name;
  if (cols % kQK != 0)
    return fmt + " stores blocks of 32 input columns and this layer has " + std::to_string(cols) +
           "; skip the layer (overrides) to keep it unquantized";
  if (g.bits != t.bits || g.sym == t.additive)
    return fmt + " decodes " + std::string(t.additive ? "asymmetric " : "symmetric ") + std::to_string(t.bits) +
           "-bit groups; quantize with " + grid_words(t) + ", not w" + std::to_string(g.bits) +
           (g.sym ? ",sym" : "");
  if (g.group_size > 0 && g.group_size % kQK != 0)
    return fmt + " blocks hold 32 columns each, so groups must be a multiple of 32 (or g0), not g" +
           std::to_string(g.group_size);
  return "";
}

bool fp16_exact(float v) { return f16_to_f32(f32_to_f16(v)) == v; }

std::string layer_refusal(const ExportType& t, const QuantizedLayer& l) {
  if (l.sparse) return "GGUF has no sparse residual tensors";
  if (l.low_rank) return "GGUF has no low-rank branch tensors";
  if (l.input_transform) return "llama.cpp applies no online input transform to a GGUF linear layer";
  const GridCodes& g = l.grid;
  if (g.coded_scales || g.coded_zeros) return "the 32-block GGUF types store fp16 statistics, not coded ones";
  if (!g.natural_order())
    return "GGUF blocks hold consecutive columns, so act-order groups (g_idx) cannot be stored; quantize without "
           "act_order, or with group_aware";
  if (g.rule != (t.additive ? OffsetRule::kAdditive : OffsetRule::kZeroPoint) || g.grid.bits != t.bits)
    return std::string(t.format_name) + " needs " + grid_words(t) + " fitted for this format";
  const float zero = float(1 << (t.bits - 1));
  for (int r = 0; r < g.rows; ++r)
    for (int gi = 0; gi < int(g.scales.cols()); ++gi) {
      const float s = g.scales(r, gi), z = g.zeros(r, gi);
      // The symmetric types take negative scales (ggml's own quantizer writes them).
      if (!(std::fabs(s) > 0) || !fp16_exact(s) || (t.additive ? !fp16_exact(z) : z != zero))
        return "row " + std::to_string(r) + " group " + std::to_string(gi) + " has scale " + std::to_string(s) +
               (t.additive ? " and offset " : " and zero ") + std::to_string(z) + ", which " + t.format_name +
               " cannot store exactly (fp16 statistics" + (t.additive ? "" : ", zero point 2^(bits-1)") + ")";
    }
  return "";
}

int permuted_heads(const std::string& hf_name, const ModelConfig& c) {
  return qk_permuted_heads(hf_name, c.num_heads, c.num_kv_heads);
}

template <typename Block>
void put_block(std::vector<uint8_t>& out, const Block& b) {
  const auto* p = reinterpret_cast<const uint8_t*>(&b);
  out.insert(out.end(), p, p + sizeof(Block));
}

// The 32 codes `q` with statistics d (and m) as one block of `type`.
void encode_block(GgmlType type, const uint8_t* q, float d, float m, std::vector<uint8_t>& out) {
  const uint16_t hd = f32_to_f16(d), hm = f32_to_f16(m);
  uint8_t nibbles[kQK / 2];
  uint32_t high = 0;
  for (int j = 0; j < kQK / 2; ++j) nibbles[j] = uint8_t((q[j] & 0xF) | (q[j + kQK / 2] & 0xF) << 4);
  for (int j = 0; j < kQK; ++j) high |= uint32_t((q[j] >> 4) & 1) << j;
  switch (type) {
    case GgmlType::Q8_0: {
      BlockQ8_0 b{hd, {}};
      for (int j = 0; j < kQK; ++j) b.qs[j] = int8_t(int(q[j]) - 128);
      return put_block(out, b);
    }
    case GgmlType::Q4_0: {
      BlockQ4_0 b{hd, {}};
      std::copy_n(nibbles, kQK / 2, b.qs);
      return put_block(out, b);
    }
    case GgmlType::Q4_1: {
      BlockQ4_1 b{hd, hm, {}};
      std::copy_n(nibbles, kQK / 2, b.qs);
      return put_block(out, b);
    }
    case GgmlType::Q5_0: {
      BlockQ5_0 b{hd, {}, {}};
      for (int i = 0; i < 4; ++i) b.qh[i] = uint8_t(high >> (8 * i));
      std::copy_n(nibbles, kQK / 2, b.qs);
      return put_block(out, b);
    }
    case GgmlType::Q5_1: {
      BlockQ5_1 b{hd, hm, {}, {}};
      for (int i = 0; i < 4; ++i) b.qh[i] = uint8_t(high >> (8 * i));
      std::copy_n(nibbles, kQK / 2, b.qs);
      return put_block(out, b);
    }
    default:
      PTQ_ASSERT(false, "kTypes lists only the 32-block types");
  }
}

std::vector<uint8_t> encode_layer(const ExportType& t, const GridCodes& g, int heads) {
  const int64_t hd = heads > 0 ? g.rows / heads : 0;
  std::vector<uint8_t> out;
  out.reserve(size_t(g.rows) * size_t(g.cols / kQK) * ggml_traits(t.type).type_size);
  for (int64_t row = 0; row < g.rows; ++row) {
    const int64_t r = hd > 0 ? hf_row_of(row, hd) : row;
    for (int c0 = 0; c0 < g.cols; c0 += kQK) {
      const int gi = g.g_idx[c0];
      encode_block(t.type, &g.q[size_t(r) * g.cols + c0], g.scales(r, gi), t.additive ? g.zeros(r, gi) : 0.0f, out);
    }
  }
  return out;
}

std::vector<int64_t> ggml_ne(const std::vector<int64_t>& shape) { return {shape.rbegin(), shape.rend()}; }

// A float tensor [rows, cols] (rows permuted over `heads` when > 0) in `dtype`'s bytes.
std::vector<uint8_t> float_bytes(const Mat& m, int heads, DType dtype) {
  const int64_t rows = m.rows(), cols = m.cols(), hd = heads > 0 ? (rows == 1 ? cols : rows) / heads : 0;
  const size_t width = dtype == DType::F32 ? 4 : 2;
  std::vector<uint8_t> out(size_t(rows * cols) * width);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      // A 1-D tensor (a bias) is one row: its entries are the permuted "rows".
      const float v = hd == 0 ? m(r, c) : rows == 1 ? m(0, hf_row_of(c, hd)) : m(hf_row_of(r, hd), c);
      uint8_t* dst = &out[size_t(r * cols + c) * width];
      if (dtype == DType::F32) {
        std::memcpy(dst, &v, 4);
      } else {
        const uint16_t h = dtype == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(dst, &h, 2);
      }
    }
  return out;
}

class GgufExportWriter final : public CheckpointWriter {
 public:
  GgufExportWriter(const FormatTraits& traits, const ExportType& type) : CheckpointWriter(traits), type_(type) {}

  bool embeds_tokenizer() const override { return true; }

  void prepare(const Model& model, std::shared_ptr<const TokenizerMetadata> tokenizer) override {
    const ModelConfig& c = model.config();
    const std::string fmt = type_.format_name;
    if (c.model_type != "llama")
      throw Error(model.path() + ": " + fmt + " writes architecture llama; this model is " + c.model_type);
    if (c.rope_scaling.type != "default" && c.rope_scaling.type != "linear")
      throw Error(model.path() + ": " + fmt + " writes default and linear RoPE scaling; this model's rope_scaling "
                  "is '" + c.rope_scaling.type + "', which llama.cpp reads in another form (not written yet)");
    if (!tokenizer)
      throw Error(model.path() + ": " + fmt + " embeds the tokenizer, and none was found (pass --tokenizer FILE)");
    tokenizer_ = std::move(tokenizer);
    config_ = c;
  }

  void replace_tensor(const std::string& name, const Mat& value) override { replaced_[name] = value; }

  void finish(const Model& model, const CheckpointMetadata& meta, const OutputDir& out) override {
    PTQ_ASSERT(tokenizer_ != nullptr, "prepare() runs before any layer");
    GgufWriter w;
    write_metadata(model, meta, w);
    write_tensors(model, w);
    w.write(out.path_of("model.gguf"));
  }

 protected:
  void store_layer(const LayerResult& r, const QuantizedLayer* q) override {
    if (!q) return;  // written from the source by finish()
    PTQ_ASSERT(config_.has_value(), "prepare() runs before any layer");
    const std::string name = r.name + ".weight";
    quantized_[name] = encode_layer(type_, q->grid, permuted_heads(name, *config_));
  }

 private:
  void write_metadata(const Model& model, const CheckpointMetadata& meta, GgufWriter& w) const {
    const ModelConfig& c = model.config();
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", fs::path(model.path()).filename().string());
    w.set_u32("general.file_type", type_.file_type);
    w.set_u32("general.quantization_version", 2);
    w.set_u32("llama.context_length", uint32_t(c.max_position_embeddings));
    w.set_u32("llama.embedding_length", uint32_t(c.hidden_size));
    w.set_u32("llama.block_count", uint32_t(c.num_layers));
    w.set_u32("llama.feed_forward_length", uint32_t(c.intermediate_size));
    w.set_u32("llama.attention.head_count", uint32_t(c.num_heads));
    w.set_u32("llama.attention.head_count_kv", uint32_t(c.num_kv_heads));
    w.set_f32("llama.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
    w.set_f32("llama.rope.freq_base", float(c.rope_theta));
    w.set_u32("llama.rope.dimension_count", uint32_t(c.head_dim));
    if (c.head_dim * c.num_heads != c.hidden_size) {
      w.set_u32("llama.attention.key_length", uint32_t(c.head_dim));
      w.set_u32("llama.attention.value_length", uint32_t(c.head_dim));
    }
    if (c.rope_scaling.type == "linear") {
      w.set_string("llama.rope.scaling.type", "linear");
      w.set_f32("llama.rope.scaling.factor", float(c.rope_scaling.factor));
    }
    w.set_u32("llama.vocab_size", uint32_t(c.vocab_size));
    write_tokenizer(*tokenizer_, w);
    for (const auto& [key, value] : meta.to_strings())
      if (key.rfind("ptq.", 0) == 0) w.set_string(key, value);
  }

  static void write_tokenizer(const TokenizerMetadata& t, GgufWriter& w) {
    w.set_string("tokenizer.ggml.model", t.model);
    w.set_string("tokenizer.ggml.pre", t.pre.empty() ? "default" : t.pre);
    w.set_strings("tokenizer.ggml.tokens", t.tokens);
    if (!t.scores.empty()) w.set_f32s("tokenizer.ggml.scores", t.scores);
    if (!t.token_types.empty()) w.set_i32s("tokenizer.ggml.token_type", t.token_types);
    if (!t.merges.empty()) w.set_strings("tokenizer.ggml.merges", t.merges);
    auto id = [&](const char* key, int v) {
      if (v >= 0) w.set_u32(key, uint32_t(v));
    };
    id("tokenizer.ggml.bos_token_id", t.bos_id);
    id("tokenizer.ggml.eos_token_id", t.eos_id);
    id("tokenizer.ggml.unknown_token_id", t.unk_id);
    id("tokenizer.ggml.padding_token_id", t.pad_id);
    if (t.add_bos) w.set_bool("tokenizer.ggml.add_bos_token", *t.add_bos);
    if (t.add_eos) w.set_bool("tokenizer.ggml.add_eos_token", *t.add_eos);
    if (!t.chat_template.empty()) w.set_string("tokenizer.chat_template", t.chat_template);
  }

  void write_tensors(const Model& model, GgufWriter& w) {
    const ModelConfig& c = model.config();
    std::vector<std::pair<std::string, std::vector<int64_t>>> names = model.required_tensors();
    if (replaced_.count("lm_head.weight") && c.tie_word_embeddings)  // a transform untied it
      names.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
    for (const auto& [hf, shape] : names) {
      const std::optional<std::string> gguf = gguf_tensor_name(hf);
      if (!gguf) throw Error(model.path() + ": tensor '" + hf + "' has no GGUF llama name");
      const std::string& name = *gguf;
      const int heads = permuted_heads(hf, c);
      if (auto q = quantized_.find(hf); q != quantized_.end()) {
        w.add_tensor(name, ggml_ne(shape), type_.type, std::move(q->second));
        continue;
      }
      auto rep = replaced_.find(hf);
      const TensorInfo* info = model.tensors().find(hf);
      // A GGUF source's own blocks (its Q8_0 embedding, say) pass through: they are the values
      // ptq evaluates, already in llama.cpp's row order.
      if (rep == replaced_.end() && info && info->ggml_type > int64_t(GgmlType::F32) && shape.size() == 2) {
        w.add_tensor(name, ggml_ne(shape), GgmlType(info->ggml_type), model.tensors().load_ggml_blocks(hf));
        continue;
      }
      const Mat value = rep != replaced_.end() ? rep->second : model.weight(hf);
      DType dtype = DType::F32;
      if (shape.size() == 2 && rep == replaced_.end() && info && (info->dtype == DType::F16 || info->dtype == DType::BF16))
        dtype = info->dtype;
      const GgmlType type = dtype == DType::F16 ? GgmlType::F16 : dtype == DType::BF16 ? GgmlType::BF16 : GgmlType::F32;
      w.add_tensor(name, ggml_ne(shape), type, float_bytes(value, heads, dtype));
    }
  }

  const ExportType& type_;
  std::shared_ptr<const TokenizerMetadata> tokenizer_;
  std::optional<ModelConfig> config_;
  std::map<std::string, std::vector<uint8_t>> quantized_;  // HF weight name -> blocks
  std::map<std::string, Mat> replaced_;
};

template <size_t I>
FormatTraits row() {
  const ExportType& t = kTypes[I];
  GridConstraints c;
  c.fp16_statistics = true;
  c.additive_offsets = t.additive;
  c.signed_extreme = !t.additive;
  return {FormatId::kGguf,
          t.format_name,
          "one llama.cpp GGUF file, linear layers as exact blocks of its type, the rest F32/F16",
          c,
          [](int rows, int cols, const QuantGrid& g) { return grid_refusal(kTypes[I], rows, cols, g); },
          [](const QuantizedLayer& l) { return layer_refusal(kTypes[I], l); },
          [](const Spec&) -> std::unique_ptr<CheckpointWriter> {
            return std::make_unique<GgufExportWriter>(format_traits(kTypes[I].format_name), kTypes[I]);
          },
          nullptr,
          nullptr};
}

}  // namespace

std::vector<FormatTraits> format_rows::gguf() { return {row<0>(), row<1>(), row<2>(), row<3>(), row<4>()}; }

}  // namespace ptq
