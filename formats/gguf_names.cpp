#include "formats/gguf_names.h"

#include <utility>

#include "ptq/model.h"

namespace ptq {
namespace {

// GGUF block tensor stem -> HF module path under model.layers.N.
constexpr std::pair<const char*, const char*> kBlockNames[] = {
    {"attn_norm", "input_layernorm"},       {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},         {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},    {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},          {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"}};

}  // namespace

std::optional<std::string> hf_tensor_name(const std::string& g, int layers) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  if (g.rfind("blk.", 0) != 0) return std::nullopt;
  const size_t dot = g.find('.', 4);
  if (dot == std::string::npos || dot == 4) return std::nullopt;
  const std::string num = g.substr(4, dot - 4);
  if (num.size() > 6 || num.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const int layer = std::stoi(num);
  if (layer >= layers || (num.size() > 1 && num[0] == '0')) return std::nullopt;
  const std::string rest = g.substr(dot + 1);
  for (const auto& [stem, module] : kBlockNames)
    for (const char* suffix : {".weight", ".bias"})
      if (rest == std::string(stem) + suffix) return layer_prefix(layer) + module + suffix;
  return std::nullopt;
}

std::optional<std::string> gguf_tensor_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const size_t dot = hf.find('.', 13);  // after "model.layers."
  if (hf.rfind("model.layers.", 0) != 0 || dot == std::string::npos) return std::nullopt;
  const std::string layer = hf.substr(13, dot - 13), rest = hf.substr(dot + 1);
  for (const auto& [stem, module] : kBlockNames)
    for (const char* suffix : {".weight", ".bias"})
      if (rest == std::string(module) + suffix) return "blk." + layer + "." + stem + suffix;
  return std::nullopt;
}

int64_t gguf_row_of(int64_t r, int64_t hd) {
  const int64_t h = r / hd, within = r % hd, half = hd / 2;
  return h * hd + 2 * (within % half) + within / half;
}

int64_t hf_row_of(int64_t row, int64_t hd) {
  const int64_t h = row / hd, within = row % hd;
  return h * hd + (within % 2) * (hd / 2) + within / 2;
}

int qk_permuted_heads(const std::string& hf, int heads, int kv_heads) {
  if (hf.ends_with("self_attn.q_proj.weight") || hf.ends_with("self_attn.q_proj.bias")) return heads;
  if (hf.ends_with("self_attn.k_proj.weight") || hf.ends_with("self_attn.k_proj.bias")) return kv_heads;
  return 0;
}

}  // namespace ptq
