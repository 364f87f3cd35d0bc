#pragma once
// Per-token fake quantization of the linear layers' inputs: the recipe stage
// `act(a8|a4[,asym][,clip=1])` (docs/rotation.md, "Activation quantization").
//
// Every row (token) x of a block linear layer's input — after the layer's online input
// transform, so x·T is what gets quantized, as QuaRot does — is rounded to a b-bit grid of its
// own range and dequantized (QuaRot's ActQuantizer, per token):
//   symmetric:  m = clip·max|x|,  s = m/(2^(b−1) − 1),  x → s·clamp(round(x/s), −2^(b−1), 2^(b−1) − 1)
//   asym:       lo = clip·min(min x, 0), hi = clip·max(max x, 0), s = (hi − lo)/(2^b − 1),
//               z = round(−lo/s),  x → s·(clamp(round(x/s) + z, 0, 2^b − 1) − z)
// A row of zeros stays zero. The lm_head keeps full-precision inputs (QuaRot does the same).
//
// The stage changes no weight and reads no calibration data: it is recorded in the recipe,
// which every checkpoint's metadata carries, and `ptq eval` applies it to what it loads (or
// `ptq eval --activations` overrides it). Only the formats ptq itself evaluates take it (ptq,
// fake); the engines behind the others would silently run full-precision activations.
//
// `kv(b4|b8[,sym][,hadamard])` does the same to the keys (after RoPE) and values every attention
// layer computes, and caches in generation: per token and head (group = head_dim), asymmetric
// unless `sym`. `hadamard` is QuaRot's R3: queries and keys both times a Hadamard of head_dim
// after RoPE, which leaves q·kᵀ unchanged and spreads the keys' outlier channels before they are
// quantized.
#include <cstdint>
#include <string>
#include <vector>

#include "ptq/spec.h"
#include "ptq/tensor.h"

namespace ptq {

struct ActivationQuant {
  int bits = 0;  // 0: none
  bool asym = false;
  double clip = 1.0;
  bool enabled() const { return bits > 0; }
  bool operator==(const ActivationQuant&) const = default;
};

// One row's integer form: x̂_j = scale·(q_j − zero), q_j in −2^(b−1)..2^(b−1)−1 (symmetric, zero
// 0) or 0..2^b−1 (asym). A row of zeros has scale 0 and every q_j = zero = 0; a row holding an
// inf or NaN has scale NaN (and q = 0), so everything computed from it is NaN, as x·Wᵀ would be.
// The packed kernels multiply these integers directly (W4A8: PackedLinear::matmul_quantized).
struct RowGrid {
  float scale = 0;
  int zero = 0;
};
RowGrid quantize_row_codes(const float* x, int n, const ActivationQuant& a, int16_t* q);
// Each row of x replaced by scale·(q − zero), in place. Deterministic: fp32 arithmetic.
void quantize_activations(Mat& x, const ActivationQuant& a);

// From an `act(...)` spec; throws Error naming the spec for bits outside 2..8, clip outside (0, 1].
ActivationQuant activation_quant_from_spec(const Spec& spec);
std::string activation_quant_spec(const ActivationQuant& a);  // canonical: "act(a4,asym,clip=0.9)"; "none" if off
// The recipe's act stage, or a disabled one. Throws Error when the recipe has more than one.
ActivationQuant recipe_activation_quant(const std::vector<Spec>& recipe);
struct KvQuant {
  int bits = 0;  // 0: none
  bool sym = false;
  bool hadamard = false;  // R3 on queries and keys
  bool enabled() const { return bits > 0; }
  bool operator==(const KvQuant&) const = default;
};
// Keys or values [tokens, heads·head_dim] quantized per token and head, in place.
void quantize_kv(Mat& x, const KvQuant& kv, int head_dim);
KvQuant kv_quant_from_spec(const Spec& spec);
std::string kv_quant_spec(const KvQuant& kv);  // "kv(b4)", "none" if off

// What inference applies on top of the weights: a recipe's act and kv stages.
struct RuntimeQuant {
  ActivationQuant act;
  KvQuant kv;
  bool enabled() const { return act.enabled() || kv.enabled(); }
  std::string spec() const;  // "act(a4)+kv(b4)", "act(a8)", or "none"
  bool operator==(const RuntimeQuant&) const = default;
};
// The recipe's act and kv stages (each at most once, else Error naming the recipe).
RuntimeQuant recipe_runtime_quant(const std::vector<Spec>& recipe);
// `none`, or '+'-joined act/kv specs (ptq eval --activations).
RuntimeQuant parse_runtime_quant(const std::string& text);

}  // namespace ptq
