// GCC 12 reports a false -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include "algorithms/grid.h"

#include <limits>

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

}  // namespace

Params find_params(const float* x, int n, const QuantGrid& g) {
  if (g.sym && g.signed_extreme) return signed_extreme_params(x, n, g);
  // Zero-point grids include zero in the range; additive ones span [min, max] only.
  float lo = g.additive ? x[0] : 0.0f, hi = lo;
#pragma omp simd reduction(min : lo) reduction(max : hi)
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
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
#pragma omp parallel for schedule(static)
  for (int r = 0; r < out.rows; ++r) {
    for (int gi = 0; gi < groups; ++gi) {
      const int c0 = group_begin(g, gi), n = group_width(g, k, gi);
      Params p = find_params(&w(r, c0), n, g);
      out.scales(r, gi) = p.scale;
      out.zeros(r, gi) = p.zero;
      for (int c = c0; c < c0 + n; ++c)
        out.q[static_cast<size_t>(r) * k + c] = static_cast<uint8_t>(quantize_code(w(r, c), p, maxq));
    }
  }
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
