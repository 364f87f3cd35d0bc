#pragma once
// Uniform integer grids (QuantGrid) — the single place where scales, zero points and codes are
// computed, so RTN, GPTQ and tests all round the same way (docs/algorithms.md, "Grids").
//
// Rules, matching the GPTQ reference quantizer (IST-DASLab/gptq, quant.py):
//  - range: lo = min(min(x), 0), hi = max(max(x), 0) (zero is always representable);
//  - sym:   hi = max(|lo|, hi) and, if lo < 0, lo = -hi (a group with no negative value keeps
//           lo = 0, as in the reference); zero = (maxq + 1) / 2;
//  - lo == hi == 0 (an all-zero group) becomes [-1, 1] so the scale is never 0;
//  - scale = (hi - lo) / maxq, zero = round(-lo / scale) (asym);
//  - a format's min_zero (GPTQ v1: 1): an asym zero below it becomes min_zero with
//    scale = hi / (maxq - min_zero), so [0, hi] still spans the remaining levels;
//  - code = clamp(round(x / scale) + zero, 0, maxq), value = scale * (code - zero);
//  - round() is round-half-to-even (std::nearbyint in the default rounding mode, the same as
//    torch.round), computed in fp32 with a true division as the reference does;
//  - additive grids (QuantGrid::additive, ggml's Q4_1/Q5_1): lo = min(x), hi = max(x) (zero need
//    not be representable), scale = (hi − lo) / maxq, offset = lo (fp16 when fp16_stats),
//    code = clamp(round((x − offset) / scale), 0, maxq), value = scale·code + offset — the
//    formula ggml's dequantizers evaluate, two fp32 roundings; a constant group c gets
//    hi = c + 1 (code 0 holds it) so that the scale is never 0;
//  - signed-extreme symmetric grids (QuantGrid::signed_extreme, ggml's Q4_0/Q5_0): m = the
//    first value of largest magnitude, scale = m / −2^(bits−1) (negative for m > 0; 1 for an
//    all-zero group), zero = 2^(bits−1): m is exactly code 0's value; mse shrinks m;
//  - mse: try shrinking [lo, hi] by p = 1, 0.99, ..., 0.21 (80 steps) and keep the p with the
//    smallest Σ|x̂ − x|^2.4 for this row/group (strictly smaller wins, so p = 1 on ties).
#include <algorithm>
#include <cmath>

#include "ptq/stages.h"

namespace ptq::grid {

struct Params {
  float scale = 1.0f;
  float zero = 0.0f;       // the zero point, or the additive offset
  bool additive = false;   // value = scale·code + zero instead of scale·(code − zero)
};

// Parameters for one row's group x[0..n) (contiguous).
Params find_params(const float* x, int n, const QuantGrid& g);

inline float quantize_code(float x, Params p, int maxq) {
  float q = p.additive ? std::nearbyint((x - p.zero) / p.scale) : std::nearbyint(x / p.scale) + p.zero;
  return std::clamp(q, 0.0f, static_cast<float>(maxq));
}
inline float dequantize_code(float code, Params p) {
  return p.additive ? p.scale * code + p.zero : p.scale * (code - p.zero);
}
// quantize-dequantize in one step (the value GPTQ propagates the error of).
inline float fake_quantize(float x, Params p, int maxq) {
  return dequantize_code(quantize_code(x, p, maxq), p);
}

// First column of group `gi` and its width, with a partial last group when K % group != 0.
inline int group_begin(const QuantGrid& g, int gi) { return g.group_size <= 0 ? 0 : gi * g.group_size; }
inline int group_width(const QuantGrid& g, int k, int gi) {
  return g.group_size <= 0 ? k : std::min(g.group_size, k - gi * g.group_size);
}

// Round-to-nearest of a whole matrix with groups in natural column order (g_idx[c] = c / group).
GridCodes quantize_rtn(const Mat& w, const QuantGrid& g);

// The offset rule codes fitted on `g` follow.
inline OffsetRule rule_of(const QuantGrid& g) { return g.additive ? OffsetRule::kAdditive : OffsetRule::kZeroPoint; }

// Throws ptq::Error unless bits is in 2..8 and the group size is positive or -1.
void validate(const QuantGrid& g, const std::string& who);

// Spec args shared by every grid-based quantizer: w<bits> (default 4), g<group> (default 128;
// g0 — or g-1 on input — means one group per row, stored as group_size -1), sym, mse.
QuantGrid grid_from_spec(const Spec& spec);
// Canonical form of those args: bits and group always ("w4,g128", "w3,g0"), flags when set.
std::string grid_spec_args(const QuantGrid& g);

}  // namespace ptq::grid
