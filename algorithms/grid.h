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
//  - K-quant super-blocks (QuantGrid::super_groups, GGUF Q2_K..Q6_K): each group is first fitted
//    as above, in fp32 (additive groups with lo = min(min(x), 0), since the stored offsets are
//    ≤ 0); then the offsets are coded, dmin = fp16(max(−lo)/cmax), c' = round(−lo/dmin), and the
//    scales refitted to the coded offsets, (hi − offset)/maxq; then d = fp16(max scale/cmax)
//    (signed: the scale of largest magnitude / −2^(sub_bits−1), as ggml's Q6_K/Q3_K quantizers),
//    c = the code of magnitude ≥ |scale/d| (never clipping the group's fitted range) clamped to
//    its range and away from a zero scale. The codes are fitted
//    with the decoded d·c and −dmin·c', the values llama.cpp computes;
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

// Parameters for one row's group x[0..n) (contiguous). Ignores super-blocks (fit_super_block).
Params find_params(const float* x, int n, const QuantGrid& g);

// One row's super-block: the parameters of its groups (decoded from the codes) and the codes.
inline constexpr int kMaxSuperGroups = 16;
struct SuperBlockParams {
  int groups = 0;
  Params group[kMaxSuperGroups];
  uint8_t scale_code[kMaxSuperGroups] = {}, offset_code[kMaxSuperGroups] = {};
  float d = 0.0f;      // scale2 of the scale codes
  float neg_dmin = 0;  // scale2 of the offset codes: −dmin (offsets = −dmin·c'), 0 without offsets
};
// x[0..n): one row's columns of a super-block (n ≤ super_width(); a last one may be partial).
SuperBlockParams fit_super_block(const float* x, int n, const QuantGrid& g);

// The coded statistics of a layer on a super-block grid, filled one super-block at a time.
class SuperBlockCodes {
 public:
  SuperBlockCodes(int rows, int k, const QuantGrid& g);
  // Records row r's super-block `unit` and writes its groups' parameters into scales/zeros.
  void record(int r, int unit, const SuperBlockParams& p, Mat& scales, Mat& zeros);
  // Moves the codes into `out` as coded_scales (and coded_zeros for additive grids).
  void attach(GridCodes& out);

 private:
  int groups_;
  CodedStatistic scales_, zeros_;
  bool additive_;
};

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

// Fits every group of one row (contiguous, original column order) into row r of scales/zeros, a
// super-block at a time when the grid has them (recorded in `codes`, which must then be given).
void fit_row(const float* row, int k, const QuantGrid& g, int r, Mat& scales, Mat& zeros, SuperBlockCodes* codes);

// Throws ptq::Error unless bits is in 2..8 and the group size is positive or -1.
void validate(const QuantGrid& g, const std::string& who);

// Spec args shared by every grid-based quantizer: w<bits> (default 4), g<group> (default 128;
// g0 — or g-1 on input — means one group per row, stored as group_size -1), sym, mse.
QuantGrid grid_from_spec(const Spec& spec);
// Canonical form of those args: bits and group always ("w4,g128", "w3,g0"), flags when set.
std::string grid_spec_args(const QuantGrid& g);

}  // namespace ptq::grid
