// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include "algorithms/grid.h"

#include <limits>
#include <optional>

#include "ptq/error.h"

namespace ptq::grid {
namespace {

constexpr int kShrinkSteps = 80;    // reference maxshrink 0.8 × grid 100
constexpr float kShrinkGrid = 100.0f;
constexpr float kMseNorm = 2.4f;

// Rounded into fp16's finite positive range (subnormal 2^-24 up to 65504): a format that stores
// fp16 must never read back a zero or infinite scale.
float stored_scale(float scale, const QuantGrid& g) {
  return g.fp16_stats ? std::clamp(f16_to_f32(f32_to_f16(scale)), 0x1p-24f, 65504.0f) : scale;
}

float stored_offset(float offset, const QuantGrid& g) {
  return g.fp16_stats ? f16_to_f32(f32_to_f16(std::clamp(offset, -65504.0f, 65504.0f))) : offset;
}

Params additive_params_for_range(float lo, float hi, const QuantGrid& g) {
  Params p;
  p.additive = true;
  p.scale = stored_scale((hi - lo) / static_cast<float>(g.max_q()), g);
  p.zero = stored_offset(lo, g);
  return p;
}

Params params_for_range(float lo, float hi, const QuantGrid& g) {
  if (g.additive) return additive_params_for_range(lo, hi, g);
  Params p;
  p.scale = stored_scale((hi - lo) / static_cast<float>(g.max_q()), g);
  p.zero = g.sym ? static_cast<float>((g.max_q() + 1) / 2) : std::nearbyint(-lo / p.scale);
  if (!g.sym && p.zero < static_cast<float>(g.min_zero)) {
    // Then lo > −scale/2 and hi > 0: codes below min_zero would only hold values under lo, so
    // [0, hi] is spread over the levels min_zero..max_q instead.
    p.zero = static_cast<float>(g.min_zero);
    p.scale = stored_scale(hi / static_cast<float>(g.max_q() - g.min_zero), g);
  }
  return p;
}

double group_error(const float* x, int n, Params p, int maxq) {
  double err = 0;
  for (int i = 0; i < n; ++i) err += std::pow(std::fabs(fake_quantize(x[i], p, maxq) - x[i]), kMseNorm);
  return err;
}

// fp16 rounding keeps the sign and stays in fp16's finite non-zero range.
float stored_signed_scale(float scale, const QuantGrid& g) {
  return std::copysign(stored_scale(std::fabs(scale), g), scale);
}

// QuantGrid::signed_extreme: ggml's rule (quantize_row_q4_0_ref), the first value of largest
// magnitude (strictly larger wins) on code 0; with `mse`, that extreme shrunk as the plain search does.
Params signed_extreme_params(const float* x, int n, const QuantGrid& g) {
  float amax = 0.0f, extreme = 0.0f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      extreme = x[i];
    }
  const float half = static_cast<float>((g.max_q() + 1) / 2);
  auto params = [&](float shrink) {
    Params p;
    p.zero = half;
    p.scale = extreme != 0.0f ? stored_signed_scale(shrink * extreme / -half, g) : 1.0f;
    return p;
  };
  Params best = params(1.0f);
  if (!g.mse || extreme == 0.0f) return best;
  double best_err = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kShrinkSteps; ++i) {
    const Params p = params(1.0f - static_cast<float>(i) / kShrinkGrid);
    const double err = group_error(x, n, p, g.max_q());
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

// The range [lo, hi] as params_for_range fits it, or with `mse` the shrunk range that fits x best.
Params fit_range(const float* x, int n, const QuantGrid& g, float lo, float hi) {
  Params best = params_for_range(lo, hi, g);
  if (!g.mse) return best;
  double best_err = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kShrinkSteps; ++i) {
    float shrink = 1.0f - static_cast<float>(i) / kShrinkGrid;
    Params p = params_for_range(shrink * lo, shrink * hi, g);
    if (!(p.scale > 0.0f)) continue;
    double err = group_error(x, n, p, g.max_q());
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

void min_max(const float* x, int n, float& lo, float& hi) {
#pragma omp simd reduction(min : lo) reduction(max : hi)
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

float fp16_round(float v) { return f16_to_f32(f32_to_f16(v)); }
// A positive second-level scale in fp16's finite positive range.
float fp16_positive(float v) { return std::clamp(fp16_round(v), 0x1p-24f, 65504.0f); }

// The first-level fit of one group of a super-block, in fp32: its (signed) scale, and for additive
// grids its offset lo ≤ 0 and top hi. A group with nothing to scale gets scale 0.
struct RawGroup {
  float scale = 0.0f, lo = 0.0f, hi = 0.0f;
};

RawGroup raw_group(const float* x, int n, const QuantGrid& first) {
  RawGroup r;
  if (first.sym) {
    const Params p = signed_extreme_params(x, n, first);
    bool all_zero = true;
    for (int i = 0; i < n; ++i) all_zero = all_zero && x[i] == 0.0f;
    r.scale = all_zero ? 0.0f : p.scale;
    return r;
  }
  float lo = 0.0f, hi = x[0];
  min_max(x, n, lo, hi);
  if (!(hi - lo > 0.0f)) {
    r.lo = r.hi = lo;
    return r;
  }
  const Params p = fit_range(x, n, first, lo, hi);
  r.scale = p.scale;
  r.lo = std::min(p.zero, 0.0f);
  r.hi = p.zero + p.scale * static_cast<float>(first.max_q());
  return r;
}

// Offsets −dmin·c' for the groups' lo ≤ 0 (none when every lo is 0).
void code_offsets(const RawGroup* raw, SuperBlockParams& s, const QuantGrid& g) {
  const int cmax = (1 << g.sub_bits) - 1;
  float top = 0.0f;
  for (int i = 0; i < s.groups; ++i) top = std::max(top, -raw[i].lo);
  const float dmin = top > 0.0f ? fp16_positive(top / static_cast<float>(cmax)) : 0.0f;
  s.neg_dmin = dmin > 0.0f ? -dmin : 0.0f;
  for (int i = 0; i < s.groups; ++i) {
    const float c = dmin > 0.0f ? std::clamp(std::nearbyint(-raw[i].lo / dmin), 0.0f, float(cmax)) : 0.0f;
    s.offset_code[i] = static_cast<uint8_t>(c);
    s.group[i].zero = s.neg_dmin * (c - 0.0f);  // CodedStatistic::decode's arithmetic
    s.group[i].additive = true;
  }
}

// The scale code of magnitude at least |ratio| (to a 1e-4 tolerance for a ratio that is an
// integer up to rounding): a coded scale smaller than the fitted one would clip the group's extreme
// values, which the first-level fit chose to represent. Measured against rounding to nearest in
// docs/algorithms.md ("K-quant super-blocks").
float covering_code(float ratio) { return std::copysign(std::ceil(std::fabs(ratio) - 1e-4f), ratio); }

// Codes d·c for the groups' scales (unsigned), or d·(c − 2^(sub_bits−1)) with d of the signed
// extreme (symmetric); never a zero scale, which the codes would divide by.
void code_scales(const float* scale, SuperBlockParams& s, const QuantGrid& g) {
  if (g.sym) {
    const int half2 = 1 << (g.sub_bits - 1);
    float extreme = 0.0f;
    for (int i = 0; i < s.groups; ++i)
      if (std::fabs(scale[i]) > std::fabs(extreme)) extreme = scale[i];
    s.d = extreme != 0.0f ? std::copysign(fp16_positive(std::fabs(extreme / -float(half2))), -extreme) : 1.0f;
    for (int i = 0; i < s.groups; ++i) {
      float l = std::clamp(covering_code(scale[i] / s.d), -float(half2), float(half2 - 1));
      if (l == 0.0f) l = scale[i] / s.d < 0.0f ? -1.0f : 1.0f;
      s.scale_code[i] = static_cast<uint8_t>(static_cast<int>(l) + half2);
      s.group[i].scale = s.d * ((l + float(half2)) - float(half2));
      s.group[i].zero = static_cast<float>((g.max_q() + 1) / 2);
    }
    return;
  }
  const int cmax = (1 << g.sub_bits) - 1;
  float top = 0.0f;
  for (int i = 0; i < s.groups; ++i) top = std::max(top, scale[i]);
  s.d = top > 0.0f ? fp16_positive(top / static_cast<float>(cmax)) : 1.0f;
  for (int i = 0; i < s.groups; ++i) {
    const float c = std::clamp(covering_code(scale[i] / s.d), 1.0f, float(cmax));
    s.scale_code[i] = static_cast<uint8_t>(c);
    s.group[i].scale = s.d * (c - 0.0f);
  }
}

}  // namespace

Params find_params(const float* x, int n, const QuantGrid& g) {
  if (g.sym && g.signed_extreme) return signed_extreme_params(x, n, g);
  // Zero-point grids include zero in the range; additive ones span [min, max] only.
  float lo = g.additive ? x[0] : 0.0f, hi = lo;
  min_max(x, n, lo, hi);
  if (g.sym) {
    hi = std::max(-lo, hi);
    if (lo < 0) lo = -hi;
  }
  // A zero-width range (or one that underflows to a zero scale) would divide by zero.
  // A constant additive group is held exactly by code 0 and its offset, whatever the scale.
  if (g.additive && !((hi - lo) / static_cast<float>(g.max_q()) > 0.0f)) hi = lo + 1.0f;
  if (!g.additive && !((hi - lo) / static_cast<float>(g.max_q()) > 0.0f)) {
    lo = -1.0f;
    hi = 1.0f;
  }
  return fit_range(x, n, g, lo, hi);
}

SuperBlockParams fit_super_block(const float* x, int n, const QuantGrid& g) {
  PTQ_ASSERT(g.super_groups > 0 && g.super_groups <= kMaxSuperGroups && g.group_size > 0 && n > 0 &&
                 n <= g.super_width() && g.sub_bits >= 2 && g.sub_bits <= 8 && (g.sym || g.additive),
             "a super-block grid is symmetric or additive, with at most kMaxSuperGroups groups");
  SuperBlockParams s;
  s.groups = (n + g.group_size - 1) / g.group_size;
  QuantGrid first = g;
  first.fp16_stats = false;
  RawGroup raw[kMaxSuperGroups];
  float scale[kMaxSuperGroups];
  for (int i = 0; i < s.groups; ++i) {
    const int c0 = i * g.group_size;
    raw[i] = raw_group(x + c0, std::min(g.group_size, n - c0), first);
    scale[i] = raw[i].scale;
  }
  if (!g.sym) {
    code_offsets(raw, s, g);
    for (int i = 0; i < s.groups; ++i)
      scale[i] = std::max(raw[i].hi - s.group[i].zero, 0.0f) / static_cast<float>(g.max_q());
  }
  code_scales(scale, s, g);
  return s;
}

SuperBlockCodes::SuperBlockCodes(int rows, int k, const QuantGrid& g)
    : groups_(g.num_groups(k)), additive_(g.additive) {
  PTQ_ASSERT(g.super_groups > 0, "a super-block grid");
  const int units = (groups_ + g.super_groups - 1) / g.super_groups;
  for (CodedStatistic* c : {&scales_, &zeros_}) {
    if (c == &zeros_ && !additive_) break;  // symmetric grids code no offsets
    c->bits = g.sub_bits;
    c->row_block = 1;
    c->group_block = g.super_groups;
    c->stored_zero2 = false;
    c->implied_zero2 = c == &scales_ && g.sym ? static_cast<float>(1 << (g.sub_bits - 1)) : 0.0f;
    c->codes.assign(static_cast<size_t>(rows) * groups_, 0);
    c->scale2 = Mat::Zero(rows, units);
    c->zero2 = Mat::Constant(rows, units, c->implied_zero2);
  }
}

void SuperBlockCodes::record(int r, int unit, const SuperBlockParams& p, Mat& scales, Mat& zeros) {
  const int g0 = unit * scales_.group_block;
  for (int i = 0; i < p.groups; ++i) {
    const size_t at = static_cast<size_t>(r) * groups_ + g0 + i;
    scales_.codes[at] = p.scale_code[i];
    if (additive_) zeros_.codes[at] = p.offset_code[i];
    scales(r, g0 + i) = p.group[i].scale;
    zeros(r, g0 + i) = p.group[i].zero;
  }
  scales_.scale2(r, unit) = p.d;
  if (additive_) zeros_.scale2(r, unit) = p.neg_dmin;
}

void SuperBlockCodes::attach(GridCodes& out) {
  out.coded_scales = std::move(scales_);
  if (additive_) out.coded_zeros = std::move(zeros_);
}

void fit_row(const float* row, int k, const QuantGrid& g, int r, Mat& scales, Mat& zeros, SuperBlockCodes* codes) {
  if (g.super_groups > 0) {
    PTQ_ASSERT(codes != nullptr, "super-block grids record their codes");
    const int width = g.super_width();
    for (int unit = 0; unit * width < k; ++unit)
      codes->record(r, unit, fit_super_block(row + unit * width, std::min(width, k - unit * width), g), scales,
                    zeros);
    return;
  }
  for (int gi = 0; gi < g.num_groups(k); ++gi) {
    const Params prm = find_params(row + group_begin(g, gi), group_width(g, k, gi), g);
    scales(r, gi) = prm.scale;
    zeros(r, gi) = prm.zero;
  }
}

GridCodes quantize_rtn(const Mat& w, const QuantGrid& g) {
  GridCodes out;
  out.rows = static_cast<int>(w.rows());
  out.cols = static_cast<int>(w.cols());
  out.grid = g;
  out.rule = rule_of(g);
  const int k = out.cols, groups = g.num_groups(k), maxq = g.max_q();
  out.q.assign(static_cast<size_t>(out.rows) * k, 0);
  out.scales.resize(out.rows, groups);
  out.zeros.resize(out.rows, groups);
  out.g_idx.resize(k);
  for (int c = 0; c < k; ++c) out.g_idx[c] = g.group_size <= 0 ? 0 : c / g.group_size;
  std::optional<SuperBlockCodes> codes;
  if (g.super_groups > 0) codes.emplace(out.rows, k, g);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < out.rows; ++r) {
    fit_row(&w(r, 0), k, g, r, out.scales, out.zeros, codes ? &*codes : nullptr);
    for (int c = 0; c < k; ++c) {
      const int gi = out.g_idx[c];
      const Params p{out.scales(r, gi), out.zeros(r, gi), g.additive};
      out.q[static_cast<size_t>(r) * k + c] = static_cast<uint8_t>(quantize_code(w(r, c), p, maxq));
    }
  }
  if (codes) codes->attach(out);
  return out;
}

void validate(const QuantGrid& g, const std::string& who) {
  if (g.bits < 2 || g.bits > 8)
    throw Error(who + ": bits must be 2..8, got w" + std::to_string(g.bits));
  if (g.additive && g.sym)
    throw Error(who + ": an additive (scale·code + offset) grid is asymmetric; drop 'sym'");
  if (g.group_size == 0 || g.group_size < -1)
    throw Error(who + ": group size must be positive, or g0 for per-channel, got " +
                std::to_string(g.group_size));
}

QuantGrid grid_from_spec(const Spec& spec) {
  QuantGrid g;
  g.bits = spec.int_value("w", 4);
  g.group_size = spec.int_value("g", 128);
  if (g.group_size == 0) g.group_size = -1;
  g.sym = spec.flag("sym");
  g.mse = spec.flag("mse");
  validate(g, "spec '" + spec.to_string() + "'");
  return g;
}

std::string grid_spec_args(const QuantGrid& g) {
  std::string s = "w" + std::to_string(g.bits) + ",g" + std::to_string(std::max(g.group_size, 0));
  if (g.sym) s += ",sym";
  if (g.mse) s += ",mse";
  return s;
}

}  // namespace ptq::grid
