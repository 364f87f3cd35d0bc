// SpQR on GPTQ's sweep: this file holds what SpQR adds (the group fit with its leave-one-out
// pre-pass and second-level statistics, the outlier scale, the layer's parts); the sweep itself
// and the update factor are GPTQ's (gptq_internal.h). Order of operations as in the reference
// (algorithms-reference.md §1 (b)): permute → damp → factor → per group: robust fit →
// second-level quantization of the statistics → per column: quantize → outlier rule → error
// feedback.
#include "algorithms/spqr.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <mutex>

#include "algorithms/gptq.h"
#include "algorithms/gptq_internal.h"
#include "algorithms/grid.h"
#include "ptq/blas.h"
#include "ptq/error.h"

namespace ptq {
namespace {

using gptq_detail::Problem;

float to_f16(float v) { return f16_to_f32(f32_to_f16(v)); }

// The reference's first-level quantizer (quant_groups.py, round_zero = False): plain min-max,
// zero not rounded, xmin == xmax → [−1, 1].
grid::Params minmax_params(const float* x, int n, int maxq) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (lo == hi) {
    lo = -1.0f;
    hi = 1.0f;
  }
  grid::Params p;
  p.scale = (hi - lo) / static_cast<float>(maxq);
  p.zero = -lo / p.scale;
  return p;
}

// The reference's quantize_dequantize: round(x/s + z) with s clamped to 1e-9.
float spqr_fake_quantize(float x, grid::Params p, int maxq) {
  const float q = std::clamp(std::nearbyint(x / std::max(p.scale, 1e-9f) + p.zero), 0.0f, static_cast<float>(maxq));
  return p.scale * (q - p.zero);
}

// Σ_m ((q(x_m) − x_m)·R_m)² over m ≠ skip, the quantizer fitted on those same weights.
double weighted_error(const float* x, const float* r_diag, int n, int skip, int maxq, std::vector<float>& buf) {
  buf.clear();
  for (int m = 0; m < n; ++m)
    if (m != skip) buf.push_back(x[m]);
  const grid::Params p = minmax_params(buf.data(), static_cast<int>(buf.size()), maxq);
  double e = 0;
  for (int m = 0; m < n; ++m) {
    if (m == skip) continue;
    const double d = (double(spqr_fake_quantize(x[m], p, maxq)) - x[m]) * r_diag[m];
    e += d * d;
  }
  return e;
}

// The leave-one-out pre-pass (get_leave_one_out_error): weights whose removal lowers the
// row-group's weighted error by more than the threshold are replaced, in the data the
// statistics are fitted on, by the mean of the others. Only the statistics see this.
void robust_fit_data(const float* x, const float* r_diag, int n, int maxq, double threshold, std::vector<float>& data,
                     std::vector<float>& buf) {
  data.assign(x, x + n);
  if (n < 3) return;
  const double base = weighted_error(x, r_diag, n, -1, maxq, buf);
  std::vector<uint8_t> likely(n, 0);
  double sum = 0;
  int kept = 0;
  for (int k = 0; k < n; ++k) {
    likely[k] = base - weighted_error(x, r_diag, n, k, maxq, buf) > threshold;
    if (!likely[k]) {
      sum += x[k];
      ++kept;
    }
  }
  if (kept == n || kept == 0) return;
  const float mean = static_cast<float>(sum / kept);
  for (int k = 0; k < n; ++k)
    if (likely[k]) data[k] = mean;
}

// Codes of v[0..m) on a min-max grid of `bits` with fp16 scale2 and fractional fp16 zero2; v is
// replaced by the decoded values, exactly what CodedStatistic::decode computes.
void code_statistic(float* v, int m, int bits, uint8_t* codes, size_t code_stride, float* scale2, float* zero2) {
  const int maxq = (1 << bits) - 1;
  float lo = *std::min_element(v, v + m), hi = *std::max_element(v, v + m);
  if (lo == hi) {
    lo = -1.0f;
    hi = 1.0f;
  }
  grid::Params p;
  p.scale = std::max(to_f16((hi - lo) / static_cast<float>(maxq)), to_f16(6e-8f));  // never a zero scale
  p.zero = to_f16(-lo / p.scale);
  for (int i = 0; i < m; ++i) {
    const float q = std::clamp(std::nearbyint(v[i] / std::max(p.scale, 1e-9f) + p.zero), 0.0f, float(maxq));
    codes[i * code_stride] = static_cast<uint8_t>(q);
    v[i] = p.scale * (q - p.zero);
  }
  *scale2 = p.scale;
  *zero2 = p.zero;
}

CodedStatistic empty_coded(int bits, int qg, int n, int groups) {
  CodedStatistic c;
  c.bits = bits;
  c.row_block = qg;
  c.group_block = 1;
  c.codes.assign(size_t(n) * groups, 0);
  c.scale2 = Mat::Zero((n + qg - 1) / qg, groups);
  c.zero2 = Mat::Zero((n + qg - 1) / qg, groups);
  return c;
}

// outlier_scale = mean_j var_rows(W[:, j]) / U_jj² (U_jj = 1 / R_jj), over working columns;
// dead columns hold zeros.
double outlier_scale(const Mat& w, const Problem& p, const Vec& r_diag) {
  const int n = static_cast<int>(w.rows()), k = static_cast<int>(w.cols());
  if (n < 2) return 0;
  double total = 0;
  for (int j = 0; j < k; ++j) {
    const int c = p.perm[j];
    if (p.dead[c]) continue;
    double mean = 0;
    for (int r = 0; r < n; ++r) mean += w(r, c);
    mean /= n;
    double var = 0;
    for (int r = 0; r < n; ++r) var += (w(r, c) - mean) * (w(r, c) - mean);
    var /= (n - 1);
    total += var * double(r_diag[j]) * double(r_diag[j]);
  }
  return total / k;
}

SparseResidual outliers_csr(const Problem& p, int n, int k) {
  SparseResidual s;
  s.row_offsets.assign(size_t(n) + 1, 0);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < k; ++c) {
      const size_t at = size_t(r) * k + c;
      if (!p.is_outlier[at]) continue;
      s.col_ids.push_back(c);
      s.values.push_back(p.outlier_residual[at]);
    }
    s.row_offsets[size_t(r) + 1] = static_cast<int32_t>(s.values.size());
  }
  return s;
}

void validate(const SpqrOptions& o) {
  if (o.bits < 2 || o.bits > 8) throw Error("spqr: bits must be in 2..8, got " + std::to_string(o.bits));
  if (o.group < 1) throw Error("spqr: the group size must be >= 1, got " + std::to_string(o.group));
  if (o.qq_bits != 0 && (o.qq_bits < 2 || o.qq_bits > 8))
    throw Error("spqr: qq bits must be 0 (off) or in 2..8, got " + std::to_string(o.qq_bits));
  if (o.qq_group != 1 && o.qq_group != 2 && o.qq_group != 4 && o.qq_group != 8 && o.qq_group != 16)
    throw Error("spqr: qg (rows per second-level group) must be 1, 2, 4, 8 or 16, got " +
                std::to_string(o.qq_group));
  if (!(o.outlier >= 0 && std::isfinite(o.outlier))) throw Error("spqr: outlier must be a finite value >= 0");
  if (!(o.damp >= 0 && o.damp < 100) || o.block < 1) throw Error("spqr: need 0 <= damp < 100 and block >= 1");
}

}  // namespace

double spqr_reference_average_bits(const SpqrOptions& o, double outlier_share) {
  const double g = o.group;
  const double stats = o.qq_bits > 0 ? 2.0 * o.qq_bits / g + 2.0 * 32.0 / (g * o.qq_group) : 32.0 / g;
  return o.bits + stats + 32.0 * outlier_share;
}

QuantizedLayer spqr_quantize(const Mat& w, const MatD& h, const SpqrOptions& o, QuantLog* log,
                             GptqWorkspace* workspace) {
  validate(o);
  const auto t0 = std::chrono::steady_clock::now();
  const int n = static_cast<int>(w.rows()), k = static_cast<int>(w.cols());
  GptqOptions go;
  go.grid.bits = o.bits;
  go.grid.group_size = o.group;
  go.grid.fp16_stats = true;  // statistics that are not coded are stored in fp16
  go.act_order = o.act_order;
  go.damp = o.damp;
  go.block = o.block;
  const std::string shape = gptq_detail::shape_of(w);
  gptq_detail::validate_inputs(w, h, go, "spqr");
  FlushDenormals ftz;
  Problem p = gptq_detail::prepare(w, h, go);
  GptqWorkspace own;
  const gptq_detail::UpdateFactor f =
      gptq_detail::damped_update_factor(h, p, go, shape, log, workspace ? *workspace : own);

  const bool outliers = o.outlier > 0;
  const double threshold = outliers ? o.outlier * outlier_scale(w, p, f.r_diag) : 0.0;
  // GPTQ's round(w/s) + z needs integer zeros; coded zeros are fractional whatever the fit.
  p.round_after_zero = !o.gptq_fit || o.qq_bits > 0;
  if (outliers) {
    p.outlier_threshold = static_cast<float>(threshold);
    p.is_outlier.assign(size_t(n) * k, 0);
    p.outlier_residual.assign(size_t(n) * k, 0.0f);
  }
  const int groups = go.grid.num_groups(k), maxq = go.grid.max_q();
  std::optional<CodedStatistic> coded_s, coded_z;
  if (o.qq_bits > 0) {
    coded_s = empty_coded(o.qq_bits, o.qq_group, n, groups);
    coded_z = empty_coded(o.qq_bits, o.qq_group, n, groups);
  }
  p.fit_group = [&](Problem& pr, int r0, int rows, int gi, int j, int width, const float* g) {
    std::vector<float> s(rows), z(rows), data, buf;
    for (int r = 0; r < rows; ++r) {
      const float* x = g + size_t(r) * width;
      if (outliers) robust_fit_data(x, &f.r_diag[j], width, maxq, threshold, data, buf);
      else data.assign(x, x + width);
      const grid::Params prm = o.gptq_fit ? grid::find_params(data.data(), width, go.grid)
                                          : minmax_params(data.data(), width, maxq);
      s[r] = prm.scale;
      z[r] = prm.zero;
    }
    if (o.qq_bits > 0) {
      for (int b = 0; b < rows; b += o.qq_group) {
        const int m = std::min(o.qq_group, rows - b), rb = (r0 + b) / o.qq_group;
        code_statistic(&s[b], m, o.qq_bits, &coded_s->codes[size_t(r0 + b) * groups + gi], groups,
                       &coded_s->scale2(rb, gi), &coded_s->zero2(rb, gi));
        code_statistic(&z[b], m, o.qq_bits, &coded_z->codes[size_t(r0 + b) * groups + gi], groups,
                       &coded_z->scale2(rb, gi), &coded_z->zero2(rb, gi));
      }
    } else if (!o.gptq_fit) {
      for (int r = 0; r < rows; ++r) {
        s[r] = to_f16(s[r]);
        z[r] = to_f16(z[r]);
      }
    }
    for (int r = 0; r < rows; ++r) {
      pr.scales(r0 + r, gi) = s[r];
      pr.zeros(r0 + r, gi) = z[r];
    }
  };
  gptq_detail::run_update_loop(p, f, go);

  QuantizedLayer out;
  out.grid = gptq_detail::assemble(p, go);
  out.grid.coded_scales = std::move(coded_s);
  out.grid.coded_zeros = std::move(coded_z);
  if (outliers) {
    SparseResidual s = outliers_csr(p, n, k);
    const double share = double(s.nnz()) / (double(n) * k);
    if (log)
      log->messages.push_back("spqr " + shape + ": " + std::to_string(s.nnz()) + " outliers, share " +
                              spec_number(share) + " (threshold " + spec_number(threshold) + ")");
    if (s.nnz() > 0) out.sparse = std::move(s);
  }
  if (log) log->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

namespace {

// "qq3" / "qg16" are bare flags to the spec grammar (one-letter keys only take numbers);
// "qq=3" works too.
int prefixed_int(const Spec& spec, const std::string& key, int def) {
  if (spec.has(key)) return spec.int_value(key, def);
  for (const SpecArg& a : spec.args) {
    if (a.value.empty() && a.key.size() > key.size() && a.key.compare(0, key.size(), key) == 0 &&
        std::all_of(a.key.begin() + key.size(), a.key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      spec.flag(a.key);
      return std::stoi(a.key.substr(key.size()));
    }
  }
  return def;
}

class Spqr final : public WeightQuantizer {
 public:
  Spqr(const Spec& spec, const GridConstraints& c) {
    o_.bits = spec.int_value("w", 3);
    o_.group = spec.int_value("g", 16);
    o_.qq_bits = prefixed_int(spec, "qq", 3);
    o_.qq_group = prefixed_int(spec, "qg", 16);
    o_.outlier = spec.double_value("outlier", 0.2);
    const std::string perm = spec.value("perm").value_or("act_order");
    if (perm != "act_order" && perm != "identity")
      throw Error("spec '" + spec.to_string() + "': perm must be act_order or identity, got '" + perm + "'");
    o_.act_order = perm == "act_order";
    o_.damp = spec.double_value("damp", 1.0);
    o_.gptq_fit = spec.flag("gptq_fit");
    o_.block = spec.int_value("block", 128);
    spec.check_all_used();
    try {
      validate(o_);
    } catch (const Error& e) {
      throw Error("spec '" + spec.to_string() + "': " + e.what());
    }
    grid_.bits = o_.bits;
    grid_.group_size = o_.group;
    c.apply(grid_);  // statistics are stored fp16 (or coded) whatever the format asks
    grid_.fp16_stats = true;
    if (grid_.additive)
      throw Error("spec '" + spec.to_string() + "': spqr's statistics are zero points, and the output format asks "
                  "for additive (scale·code + offset) groups");
    if (grid_.super_groups > 0)
      throw Error("spec '" + spec.to_string() + "': spqr codes its statistics per 16 rows, and the output format "
                  "codes them per super-block (a GGUF K-quant)");
  }
  std::string spec() const override {
    std::string s = "spqr(w" + std::to_string(o_.bits) + ",g" + std::to_string(o_.group) + ",qq" +
                    std::to_string(o_.qq_bits) + ",qg" + std::to_string(o_.qq_group);
    if (o_.outlier != 0.2) s += ",outlier=" + spec_number(o_.outlier);
    if (!o_.act_order) s += ",perm=identity";
    if (o_.damp != 1.0) s += ",damp=" + spec_number(o_.damp);
    if (o_.gptq_fit) s += ",gptq_fit";
    if (o_.block != 128) s += ",block=" + std::to_string(o_.block);
    return s + ")";
  }
  const QuantGrid& grid() const override { return grid_; }
  bool needs_stats() const override { return true; }
  QuantizedLayer quantize(const Mat& w, const InputStats* stats, QuantLog* log) const override {
    if (!stats || stats->tokens() == 0)
      throw Error("spqr: layer " + gptq_detail::shape_of(w) + " needs calibration inputs, got none");
    if (stats->k() != w.cols())
      throw Error("spqr: layer " + gptq_detail::shape_of(w) + " got input statistics for " +
                  std::to_string(stats->k()) + " features");
    std::unique_lock<std::mutex> lock(workspace_mutex_, std::try_to_lock);
    return spqr_quantize(w, stats->hessian(), o_, log, lock.owns_lock() ? &workspace_ : nullptr);
  }

 private:
  SpqrOptions o_;
  QuantGrid grid_;
  mutable std::mutex workspace_mutex_;
  mutable GptqWorkspace workspace_;  // reused from layer to layer
};

const QuantizerRegistrar kRegister("spqr", [](const Spec& s, const GridConstraints& c)
                                               -> std::unique_ptr<WeightQuantizer> {
  return std::make_unique<Spqr>(s, c);
});

}  // namespace
}  // namespace ptq
