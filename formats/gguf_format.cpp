// GGUF export, output formats "gguf(q8_0)", "gguf(q4_0)", "gguf(q4_1)", "gguf(q5_0)", "gguf(q5_1)",
// the K-quants "gguf(q2_k)" .. "gguf(q6_k)" and llama.cpp's mixtures "gguf(q3_k_m)", "gguf(q4_k_m)":
// one file OUT/model.gguf that llama.cpp loads (architecture llama), its quantized linear layers
// on exactly the block grid llama.cpp decodes, so that GPTQ's and AWQ's error feedback happens on
// the values llama.cpp computes with. File layout: formats/gguf_writer.h; block layouts (every
// byte): formats/ggml_blocks.h, the K element orders at pack_q*_K in formats/ggml_blocks.cpp.
// Per quantized layer W [N, K] of type T (each layer's T follows from its grid, block_type_of):
//
//   blk.L.<name>.weight   T   ne {K, N}   bytes N · K/32 · sizeof(block of T)     (32-block types)
//                                         bytes N · K/256 · sizeof(block of T)    (K types)
//
// 32-block types: block b of row n holds columns 32b..32b+31 of row n with the statistics of
// their group (groups are multiples of 32, so a block never straddles two; a larger group repeats
// them). The symmetric types' grids are scaled by each group's signed extreme, as ggml's own
// quantizers scale Q4_0/Q5_0 (QuantGrid::signed_extreme: d = m / −2^(b−1), so m is exact):
//   Q8_0  d = scale,  qs = code − 128                        (w8 sym: value d·(code − 128))
//   Q4_0  d = scale,  nibbles = code                         (w4 sym: value d·(code − 8))
//   Q5_0  d = scale,  5-bit code split into qs / qh          (w5 sym: value d·(code − 16))
//   Q4_1  d = scale, m = offset, nibbles = code              (w4 additive: value d·code + m)
//   Q5_1  d = scale, m = offset, 5-bit code                  (w5 additive)
// K types: super-block b of row n holds columns 256b..256b+255, its groups' statistics as the
// layer's coded statistics (QuantGrid::super_groups): sub-block scale codes sc (and minimum codes
// m), second levels d = coded_scales.scale2, dmin = −coded_zeros.scale2:
//   Q2_K  w2 g16 additive   d·sc·q − dmin·m   (4-bit sc, m)
//   Q3_K  w3 g16 sym        d·(sc − 32)·(q − 4)   (6-bit sc stored as the code, scale/d + 32)
//   Q4_K  w4 g32 additive   d·sc·q − dmin·m   (6-bit sc, m)
//   Q5_K  w5 g32 additive   d·sc·q − dmin·m   (6-bit sc, m)
//   Q6_K  w6 g16 sym        d·sc·(q − 32)     (int8 sc, the code − 128)
// d and m (d, dmin) are the grid's fp16 statistics, stored bit for bit, so llama.cpp's
// dequantization of every block equals QuantizedLayer::effective_weight() exactly
// (tests/test_gguf_export.cpp).
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
#include <utility>

#include "formats/checkpoint_writer.h"
#include "formats/fake_quant.h"
#include "formats/format_rows.h"
#include "formats/gguf_names.h"
#include "formats/gguf_writer.h"
#include "ptq/error.h"

namespace fs = std::filesystem;

namespace ptq {
namespace {

// One ggml block type a quantized layer can be stored as.
struct BlockType {
  const char* name;  // "Q4_K", for messages
  GgmlType type;
  int bits;
  bool additive;  // d·code + m (the _1 types and Q2_K/Q4_K/Q5_K) rather than d·(code − 2^(bits−1))
  int group;      // the group size it decodes: 32 (a multiple, for the 32-block types) or the K group
  bool k_quant;   // 256-weight super-blocks with coded sub-block statistics
};

constexpr BlockType kQ8_0{"Q8_0", GgmlType::Q8_0, 8, false, 32, false};
constexpr BlockType kQ4_0{"Q4_0", GgmlType::Q4_0, 4, false, 32, false};
constexpr BlockType kQ4_1{"Q4_1", GgmlType::Q4_1, 4, true, 32, false};
constexpr BlockType kQ5_0{"Q5_0", GgmlType::Q5_0, 5, false, 32, false};
constexpr BlockType kQ5_1{"Q5_1", GgmlType::Q5_1, 5, true, 32, false};
constexpr BlockType kQ2_K{"Q2_K", GgmlType::Q2_K, 2, true, 16, true};
constexpr BlockType kQ3_K{"Q3_K", GgmlType::Q3_K, 3, false, 16, true};
constexpr BlockType kQ4_K{"Q4_K", GgmlType::Q4_K, 4, true, 32, true};
constexpr BlockType kQ5_K{"Q5_K", GgmlType::Q5_K, 5, true, 32, true};
constexpr BlockType kQ6_K{"Q6_K", GgmlType::Q6_K, 6, false, 16, true};
constexpr const BlockType* kBlockTypes[] = {&kQ8_0, &kQ4_0, &kQ4_1, &kQ5_0, &kQ5_1,
                                            &kQ2_K, &kQ3_K, &kQ4_K, &kQ5_K, &kQ6_K};

// One row of the format table: the file's main type. Its layers may take other types of its
// family through per-layer overrides (mixtures such as Q4_K_M): the symmetric 32-block rows hold
// Q8_0/Q4_0/Q5_0, the asymmetric ones Q4_1/Q5_1, the K rows every K type plus Q8_0/Q4_0/Q5_0.
// llama.cpp's preset mixtures (llama_tensor_get_type in src/llama-quant.cpp, for llama models
// without experts), applied to the layers whose grid is the row's main one.
enum class Mix : uint8_t { kNone, kQ3_K_M, kQ4_K_M };

struct ExportType {
  const char* format_name;  // "gguf(q4_k)"
  const BlockType& main;
  uint32_t file_type;  // general.file_type (llama.cpp's LLAMA_FTYPE_MOSTLY_*; plain K rows: the _S mix)
  Mix mix = Mix::kNone;
};

constexpr ExportType kTypes[] = {
    {"gguf(q8_0)", kQ8_0, 7},
    {"gguf(q4_0)", kQ4_0, 2},
    {"gguf(q4_1)", kQ4_1, 3},
    {"gguf(q5_0)", kQ5_0, 8},
    {"gguf(q5_1)", kQ5_1, 9},
    {"gguf(q2_k)", kQ2_K, 10},
    {"gguf(q3_k)", kQ3_K, 11},
    {"gguf(q3_k_m)", kQ3_K, 12, Mix::kQ3_K_M},
    {"gguf(q4_k)", kQ4_K, 14},
    {"gguf(q4_k_m)", kQ4_K, 15, Mix::kQ4_K_M},
    {"gguf(q5_k)", kQ5_K, 16},
    {"gguf(q6_k)", kQ6_K, 18},
};

bool in_family(const ExportType& t, const BlockType& b) {
  if (t.main.k_quant) return b.k_quant || !b.additive;
  return !b.k_quant && b.additive == t.main.additive;
}

// The block type of a layer on the (constrained) grid g in a file of row t, or nullptr.
const BlockType* block_type_of(const ExportType& t, const QuantGrid& g) {
  for (const BlockType* b : kBlockTypes) {
    if (!in_family(t, *b) || b->bits != g.bits || b->additive == g.sym) continue;
    if (b->k_quant ? g.super_groups > 0 && g.group_size == b->group
                   : g.super_groups == 0 && (g.group_size <= 0 || g.group_size % kQK == 0))
      return b;
  }
  return nullptr;
}

// The grid a type decodes, as a spec would say it.
std::string grid_words(const BlockType& b) {
  const std::string w = "w" + std::to_string(b.bits) + (b.additive ? "" : ",sym");
  return b.k_quant ? w + ",g" + std::to_string(b.group) : w + " with groups of 32 (or a multiple)";
}

std::string family_words(const ExportType& t) {
  std::string out;
  for (const BlockType* b : kBlockTypes)
    if (in_family(t, *b)) out += std::string(out.empty() ? "" : ", ") + b->name + " (" + grid_words(*b) + ")";
  return out;
}

// The 32-block type of the same bits that a layer whose width is not a multiple of 256 takes
// instead of a K type: llama.cpp's own fallbacks (Q4_K → Q5_0, Q6_K → Q8_0), except that Q5_K
// takes Q5_0 (llama.cpp: Q5_1, an asymmetric grid that a K file's w5 asymmetric g32 spec would
// name Q5_K) and Q2_K/Q3_K take Q4_0 (llama.cpp: IQ4_NL, a non-uniform grid ptq does not fit).
const BlockType& k_fallback(const BlockType& b) {
  if (b.bits == 6) return kQ8_0;
  if (b.bits == 4 || b.bits == 5) return kQ5_0;
  return kQ4_0;
}

std::string grid_refusal(const ExportType& t, int, int cols, const QuantGrid& g) {
  const std::string fmt = t.format_name;
  const BlockType* b = block_type_of(t, g);
  if (!b) {
    if (!t.main.k_quant && g.group_size > 0 && g.group_size % kQK != 0 && g.bits == t.main.bits &&
        g.sym != t.main.additive)
      return fmt + " blocks hold 32 columns each, so groups must be a multiple of 32 (or g0), not g" +
             std::to_string(g.group_size);
    return fmt + " decodes " + std::string(t.main.additive ? "asymmetric " : "symmetric ") +
           std::to_string(t.main.bits) + "-bit groups; quantize with " + grid_words(t.main) + ", not w" +
           std::to_string(g.bits) + (g.sym ? ",sym" : "") + ",g" + std::to_string(g.group_size) +
           " (per-layer overrides may choose another type of this file: " + family_words(t) + ")";
  }
  if (cols % kQK != 0)
    return fmt + " stores blocks of 32 input columns and this layer has " + std::to_string(cols) +
           "; skip the layer (overrides) to keep it unquantized";
  if (b->k_quant && cols % kQK_K != 0)
    return fmt + ": " + b->name + " stores super-blocks of 256 input columns and this layer has " +
           std::to_string(cols) + "; override it to " + k_fallback(*b).name + " (" + grid_words(k_fallback(*b)) + ")";
  return "";
}

// The layer's index and its name within the block ("self_attn.v_proj"), or -1.
int layer_index(const std::string& layer, std::string* within) {
  const std::string prefix = "model.layers.";
  if (layer.rfind(prefix, 0) != 0) return -1;
  const size_t dot = layer.find('.', prefix.size());
  if (dot == std::string::npos) return -1;
  *within = layer.substr(dot + 1);
  return std::stoi(layer.substr(prefix.size(), dot - prefix.size()));
}

// The type llama.cpp's mixture gives layer i of n, from the main type.
const BlockType& mixture_type(Mix mix, const std::string& within, int i, int n) {
  const bool more_bits = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;  // use_more_bits
  if (mix == Mix::kQ4_K_M) {
    if ((within == "self_attn.v_proj" || within == "mlp.down_proj") && more_bits) return kQ6_K;
    return kQ4_K;
  }
  if (mix == Mix::kQ3_K_M) {
    if (within == "self_attn.v_proj") return i < 2 ? kQ5_K : kQ4_K;
    if (within == "mlp.down_proj") return i < n / 16 ? kQ5_K : kQ4_K;
    if (within == "self_attn.o_proj") return kQ4_K;
    return kQ3_K;
  }
  PTQ_ASSERT(false, "a mixture row");
}

// The override that puts a layer on type `b` (the spec's sym flag set or removed).
LayerOverride override_to(const BlockType& b, const QuantGrid& g) {
  LayerOverride o;
  o.bits = b.bits;
  o.group_size = b.group;
  if (!b.additive && !g.sym) o.args.push_back({"sym", ""});
  if (b.additive && g.sym) o.unset.push_back("sym");
  return o;
}

// A preset mixture's type for the layer, then a 32-block type for a K type its width cannot hold.
std::optional<FormatFallback> layer_override(const ExportType& t, const std::string& layer, const ModelConfig& c,
                                             int, int cols, const QuantGrid& g) {
  const BlockType* b = block_type_of(t, g);
  if (!b) return std::nullopt;
  std::optional<FormatFallback> out;
  std::string within;
  const int i = layer_index(layer, &within);
  if (t.mix != Mix::kNone && b == &t.main && i >= 0) {
    const BlockType& m = mixture_type(t.mix, within, i, c.num_layers);
    if (&m != b) {
      out = FormatFallback{override_to(m, g), std::string(m.name) + " (" + grid_words(m) + "), as llama.cpp's " +
                                                  t.format_name + " mixture gives layer " + std::to_string(i) + "'s " +
                                                  within};
      b = &m;
    }
  }
  if (b->k_quant && cols % kQK_K != 0 && cols % kQK == 0) {
    const BlockType& f = k_fallback(*b);
    const std::string why = std::string(b->name) + " stores super-blocks of 256 input columns and this layer has " +
                            std::to_string(cols) + ": " + f.name + " (" + grid_words(f) + ") instead";
    out = FormatFallback{override_to(f, g), out ? out->why + "; " + why : why};
  }
  return out;
}

bool fp16_exact(float v) { return f16_to_f32(f32_to_f16(v)) == v; }

std::string statistic_refusal(int r, int gi, float s, float z, const BlockType& b, const std::string& fmt) {
  return "row " + std::to_string(r) + " group " + std::to_string(gi) + " has scale " + std::to_string(s) +
         (b.additive ? " and offset " : " and zero ") + std::to_string(z) + ", which " + b.name + " in " + fmt +
         " cannot store exactly (" +
         (b.k_quant ? "the decoded values of its coded sub-block statistics"
                    : std::string("fp16 statistics") + (b.additive ? "" : ", zero point 2^(bits-1)")) +
         ")";
}

// A K type's coded statistic: sub_bits-bit codes per group, one fp16 second level per super-block
// and row, zero2 implied (the signed sub-scales' 2^(sub_bits−1), else 0).
bool k_coded_fits(const CodedStatistic& c, const QuantGrid& g, bool signed_codes) {
  if (c.bits != g.sub_bits || c.row_block != 1 || c.group_block != g.super_groups || c.stored_zero2) return false;
  if (c.implied_zero2 != (signed_codes ? float(1 << (g.sub_bits - 1)) : 0.0f)) return false;
  for (Eigen::Index i = 0; i < c.scale2.size(); ++i)
    if (!fp16_exact(c.scale2.data()[i])) return false;
  return true;
}

std::string k_layer_refusal(const BlockType& b, const GridCodes& g, const std::string& fmt) {
  const std::string need = fmt + ": " + b.name + " stores its sub-block scales" + (b.additive ? " and minimums" : "") +
                           " as " + std::to_string(g.grid.sub_bits) + "-bit codes of fp16 super-block scales";
  if (!g.coded_scales || !k_coded_fits(*g.coded_scales, g.grid, !b.additive)) return need;
  if (b.additive != g.coded_zeros.has_value()) return need;
  if (g.coded_zeros) {
    if (!k_coded_fits(*g.coded_zeros, g.grid, false)) return need;
    for (Eigen::Index i = 0; i < g.coded_zeros->scale2.size(); ++i)
      if (g.coded_zeros->scale2.data()[i] > 0) return need + " (minimums are subtracted: offsets ≤ 0)";
  }
  const int groups = int(g.scales.cols());
  for (int r = 0; r < g.rows; ++r)
    for (int gi = 0; gi < groups; ++gi) {
      const float s = g.scales(r, gi), z = g.zeros(r, gi);
      const bool scale_ok = s == g.coded_scales->decode(r, gi, groups) && std::fabs(s) > 0;
      const bool zero_ok = b.additive ? z == g.coded_zeros->decode(r, gi, groups) : z == float(1 << (b.bits - 1));
      if (!scale_ok || !zero_ok) return statistic_refusal(r, gi, s, z, b, fmt);
    }
  return "";
}

std::string layer_refusal(const ExportType& t, const QuantizedLayer& l) {
  if (l.sparse) return "GGUF has no sparse residual tensors";
  if (l.low_rank) return "GGUF has no low-rank branch tensors";
  if (l.input_transform) return "llama.cpp applies no online input transform to a GGUF linear layer";
  const GridCodes& g = l.grid;
  if (!g.natural_order())
    return "GGUF blocks hold consecutive columns, so act-order groups (g_idx) cannot be stored; quantize without "
           "act_order, or with group_aware";
  const BlockType* b = block_type_of(t, g.grid);
  if (!b || g.rule != (b->additive ? OffsetRule::kAdditive : OffsetRule::kZeroPoint))
    return std::string(t.format_name) + " needs one of " + family_words(t) + " fitted for this format";
  if (b->k_quant) return k_layer_refusal(*b, g, t.format_name);
  if (g.coded_scales || g.coded_zeros) return "the 32-block GGUF types store fp16 statistics, not coded ones";
  const float zero = float(1 << (b->bits - 1));
  for (int r = 0; r < g.rows; ++r)
    for (int gi = 0; gi < int(g.scales.cols()); ++gi) {
      const float s = g.scales(r, gi), z = g.zeros(r, gi);
      // The symmetric types take negative scales (ggml's own quantizer writes them).
      if (!(std::fabs(s) > 0) || !fp16_exact(s) || (b->additive ? !fp16_exact(z) : z != zero))
        return statistic_refusal(r, gi, s, z, *b, t.format_name);
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

// One row's super-block `unit` (256 columns from c0) of a K type.
void encode_super_block(const BlockType& b, const GridCodes& g, int64_t r, int unit, std::vector<uint8_t>& out) {
  const int groups = int(g.scales.cols()), per = g.grid.super_groups;
  const uint8_t* q = &g.q[size_t(r) * g.cols + size_t(unit) * kQK_K];
  const uint8_t* sc = &g.coded_scales->codes[size_t(r) * groups + size_t(unit) * per];
  const uint8_t* m = g.coded_zeros ? &g.coded_zeros->codes[size_t(r) * groups + size_t(unit) * per] : nullptr;
  const uint16_t d = f32_to_f16(g.coded_scales->scale2(r, unit));
  const float neg_dmin = g.coded_zeros ? g.coded_zeros->scale2(r, unit) : 0.0f;
  const uint16_t dmin = f32_to_f16(neg_dmin == 0.0f ? 0.0f : -neg_dmin);
  switch (b.type) {
    case GgmlType::Q2_K: return put_block(out, pack_q2_K(q, sc, m, d, dmin));
    case GgmlType::Q3_K: return put_block(out, pack_q3_K(q, sc, d));
    case GgmlType::Q4_K: return put_block(out, pack_q4_K(q, sc, m, d, dmin));
    case GgmlType::Q5_K: return put_block(out, pack_q5_K(q, sc, m, d, dmin));
    case GgmlType::Q6_K: {
      int8_t signed_sc[kQK_K / 16];
      for (int i = 0; i < kQK_K / 16; ++i) signed_sc[i] = int8_t(int(sc[i]) - 128);
      return put_block(out, pack_q6_K(q, signed_sc, d));
    }
    default:
      PTQ_ASSERT(false, "only the K types have super-blocks");
  }
}

std::vector<uint8_t> encode_layer(const BlockType& b, const GridCodes& g, int heads) {
  const int64_t hd = heads > 0 ? g.rows / heads : 0;
  const int block = b.k_quant ? kQK_K : kQK;
  std::vector<uint8_t> out;
  out.reserve(size_t(g.rows) * size_t(g.cols / block) * ggml_traits(b.type).type_size);
  for (int64_t row = 0; row < g.rows; ++row) {
    const int64_t r = hd > 0 ? hf_row_of(row, hd) : row;
    for (int c0 = 0; c0 < g.cols; c0 += block) {
      if (b.k_quant) {
        encode_super_block(b, g, r, c0 / kQK_K, out);
        continue;
      }
      const int gi = g.g_idx[c0];
      encode_block(b.type, &g.q[size_t(r) * g.cols + c0], g.scales(r, gi), b.additive ? g.zeros(r, gi) : 0.0f, out);
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
    const BlockType* b = block_type_of(type_, q->grid.grid);
    PTQ_ASSERT(b != nullptr, "layer_refusal accepted the layer");
    quantized_[name] = {b->type, encode_layer(*b, q->grid, permuted_heads(name, *config_))};
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
    if (untied_by_transform(model, replaced_))
      names.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
    for (const auto& [hf, shape] : names) {
      const std::optional<std::string> gguf = gguf_tensor_name(hf);
      if (!gguf) throw Error(model.path() + ": tensor '" + hf + "' has no GGUF llama name");
      const std::string& name = *gguf;
      const int heads = permuted_heads(hf, c);
      if (auto q = quantized_.find(hf); q != quantized_.end()) {
        w.add_tensor(name, ggml_ne(shape), q->second.first, std::move(q->second.second));
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
  std::map<std::string, std::pair<GgmlType, std::vector<uint8_t>>> quantized_;  // HF weight name -> blocks
  std::map<std::string, Mat> replaced_;
};

template <size_t I>
FormatTraits row() {
  const ExportType& t = kTypes[I];
  GridConstraints c;
  c.fp16_statistics = true;
  c.additive_offsets = t.main.additive && !t.main.k_quant;
  c.signed_extreme = !t.main.additive || t.main.k_quant;
  c.k_quant_super_blocks = t.main.k_quant;
  return {FormatId::kGguf,
          t.format_name,
          t.main.k_quant ? "one llama.cpp GGUF file, linear layers as exact K-quant super-blocks, the rest F32/F16"
                         : "one llama.cpp GGUF file, linear layers as exact blocks of its type, the rest F32/F16",
          c,
          [](int rows, int cols, const QuantGrid& g) { return grid_refusal(kTypes[I], rows, cols, g); },
          [](const QuantizedLayer& l) { return layer_refusal(kTypes[I], l); },
          [](const Spec&) -> std::unique_ptr<CheckpointWriter> {
            return std::make_unique<GgufExportWriter>(format_traits(kTypes[I].format_name), kTypes[I]);
          },
          nullptr,
          nullptr,
          [](const std::string& layer, const ModelConfig& c, int rows, int cols, const QuantGrid& g) {
            return layer_override(kTypes[I], layer, c, rows, cols, g);
          }};
}

template <size_t... I>
std::vector<FormatTraits> rows(std::index_sequence<I...>) {
  return {row<I>()...};
}

}  // namespace

std::vector<FormatTraits> format_rows::gguf() { return rows(std::make_index_sequence<std::size(kTypes)>()); }

}  // namespace ptq
