#include "ptq/quantized_layer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

#include "ptq/bitstream.h"
#include "ptq/error.h"

namespace ptq {

const char* offset_rule_name(OffsetRule r) { return r == OffsetRule::kZeroPoint ? "zero_point" : "additive"; }

// ---- GridCodes ------------------------------------------------------------------------------

Mat GridCodes::dequantize() const {
  PTQ_ASSERT(int(g_idx.size()) == cols && q.size() == size_t(rows) * cols);
  Mat w(rows, cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) w(r, c) = value(r, c);
  return w;
}

bool GridCodes::integer_zeros() const {
  if (rule != OffsetRule::kZeroPoint) return false;
  const float maxq = float(grid.max_q());
  for (Eigen::Index i = 0; i < zeros.size(); ++i) {
    const float z = zeros.data()[i];
    if (!(z >= 0.0f && z <= maxq) || z != std::nearbyint(z)) return false;
  }
  return true;
}

bool GridCodes::natural_order() const {
  for (int c = 0; c < cols; ++c)
    if (g_idx[c] != (grid.group_size <= 0 ? 0 : c / grid.group_size)) return false;
  return true;
}

bool operator==(const GridCodes& a, const GridCodes& b) {
  auto same_stat = [](const std::optional<CodedStatistic>& x, const std::optional<CodedStatistic>& y) {
    if (x.has_value() != y.has_value()) return false;
    if (!x) return true;
    return x->bits == y->bits && x->row_block == y->row_block && x->group_block == y->group_block &&
           x->stored_zero2 == y->stored_zero2 && x->implied_zero2 == y->implied_zero2 && x->codes == y->codes && x->scale2 == y->scale2 &&
           x->zero2 == y->zero2;
  };
  return a.rows == b.rows && a.cols == b.cols && a.grid.bits == b.grid.bits &&
         a.grid.group_size == b.grid.group_size && a.grid.sym == b.grid.sym && a.rule == b.rule &&
         a.q == b.q && a.scales == b.scales && a.zeros == b.zeros && a.g_idx == b.g_idx &&
         same_stat(a.coded_scales, b.coded_scales) && same_stat(a.coded_zeros, b.coded_zeros);
}

// ---- SparseResidual -------------------------------------------------------------------------

void SparseResidual::add_to(Mat& w) const {
  PTQ_ASSERT(row_offsets.size() == size_t(w.rows()) + 1);
  for (Eigen::Index r = 0; r < w.rows(); ++r)
    for (int32_t i = row_offsets[r]; i < row_offsets[r + 1]; ++i) w(r, col_ids[i]) += values[i];
}

SparseResidual SparseResidual::from_dense(const Mat& dense) {
  SparseResidual s;
  s.row_offsets.assign(size_t(dense.rows()) + 1, 0);
  for (Eigen::Index r = 0; r < dense.rows(); ++r) {
    for (Eigen::Index c = 0; c < dense.cols(); ++c) {
      const float v = f16_to_f32(f32_to_f16(dense(r, c)));
      if (v == 0.0f) continue;
      s.col_ids.push_back(int32_t(c));
      s.values.push_back(v);
    }
    s.row_offsets[r + 1] = int32_t(s.values.size());
  }
  return s;
}

bool operator==(const SparseResidual& a, const SparseResidual& b) {
  return a.row_offsets == b.row_offsets && a.col_ids == b.col_ids && a.values == b.values;
}

// ---- LowRankBranch --------------------------------------------------------------------------

Mat LowRankBranch::product() const { return (l1.cast<double>() * l2.cast<double>()).cast<float>(); }

bool operator==(const LowRankBranch& a, const LowRankBranch& b) {
  return a.bits == b.bits && a.l1 == b.l1 && a.l2 == b.l2;
}

// ---- Hadamard matrices ----------------------------------------------------------------------

namespace {

bool is_pow2(int n) { return n > 0 && (n & (n - 1)) == 0; }

bool is_prime(int q) {
  if (q < 2) return false;
  for (int d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// Paley construction I: order q + 1 for a prime q ≡ 3 (mod 4). With χ the quadratic character
// mod q and Q[i][j] = χ(j − i), S = [[0, 1ᵀ], [−1, Q]] is skew and H = I + S is Hadamard.
bool paley_order(int order) {
  const int q = order - 1;
  return order > 4 && !is_pow2(order) && q % 4 == 3 && is_prime(q);
}

Mat paley_matrix(int order) {
  const int q = order - 1;
  std::vector<int> chi(q, -1);
  chi[0] = 0;
  for (int x = 1; x < q; ++x) chi[size_t(x) * x % q] = 1;
  Mat h = Mat::Identity(order, order);
  for (int j = 1; j < order; ++j) {
    h(0, j) += 1.0f;
    h(j, 0) -= 1.0f;
  }
  for (int i = 0; i < q; ++i)
    for (int j = 0; j < q; ++j) h(i + 1, j + 1) += float(chi[((j - i) % q + q) % q]);
  return h;
}

// Cheapest decomposition of `size` into one power of two (butterflies cost log2 per element)
// times Paley factors (a dense factor of order m costs m per element).
bool decompose(int size, std::vector<int>* factors, double* cost) {
  if (is_pow2(size)) {
    *factors = {size};
    *cost = std::log2(double(size));
    return true;
  }
  bool found = false;
  for (int m = 12; m <= size; ++m) {
    if (size % m != 0 || !paley_order(m)) continue;
    std::vector<int> rest;
    double rest_cost = 0;
    if (!decompose(size / m, &rest, &rest_cost)) continue;
    if (found && rest_cost + m >= *cost) continue;
    *factors = rest;
    factors->push_back(m);
    *cost = rest_cost + m;
    found = true;
  }
  return found;
}

}  // namespace

bool hadamard_factor_supported(int order) { return is_pow2(order) || paley_order(order); }

Mat hadamard_matrix(int order) {
  PTQ_ASSERT(hadamard_factor_supported(order));
  if (!is_pow2(order)) return paley_matrix(order);
  Mat h = Mat::Ones(1, 1);
  while (h.rows() < order) {
    const Eigen::Index n = h.rows();
    Mat next(2 * n, 2 * n);
    next << h, h, h, -h;
    h = std::move(next);
  }
  return h;
}

std::vector<int> hadamard_factors(int size) {
  std::vector<int> f;
  double cost = 0;
  if (size <= 0 || !decompose(size, &f, &cost)) return {};
  if (f.size() > 1 && f.front() == 1) f.erase(f.begin());
  return f;
}

// ---- InputTransform -------------------------------------------------------------------------

namespace {

// y = x·M (or x·Mᵀ) for one factor M of order m acting on the middle axis of the block viewed
// as [outer, m, inner], on one block of doubles. Sylvester factors (symmetric) run as butterflies.
void apply_factor(std::vector<double>& v, const Mat& m, int outer, int inner, bool transpose,
                  std::vector<double>& tmp) {
  const int order = int(m.rows());
  if (is_pow2(order)) {
    for (int o = 0; o < outer; ++o) {
      double* base = &v[size_t(o) * order * inner];
      for (int h = 1; h < order; h *= 2)
        for (int i = 0; i < order; i += 2 * h)
          for (int j = i; j < i + h; ++j)
            for (int n = 0; n < inner; ++n) {
              const double a = base[size_t(j) * inner + n], b = base[size_t(j + h) * inner + n];
              base[size_t(j) * inner + n] = a + b;
              base[size_t(j + h) * inner + n] = a - b;
            }
    }
    return;
  }
  tmp.assign(v.size(), 0.0);
  for (int o = 0; o < outer; ++o)
    for (int j = 0; j < order; ++j)
      for (int i = 0; i < order; ++i) {
        const double mij = transpose ? m(j, i) : m(i, j);  // y_j = Σ_i x_i M_ij
        const double* src = &v[(size_t(o) * order + i) * inner];
        double* dst = &tmp[(size_t(o) * order + j) * inner];
        for (int n = 0; n < inner; ++n) dst[n] += mij * src[n];
      }
  v.swap(tmp);
}

// Rows of `x` through T (or Tᵀ) of a Hadamard transform, fp64 throughout.
Mat hadamard_rows(const InputTransform& t, const Mat& x, bool transpose) {
  const int b = t.block();
  std::vector<Mat> mats;
  for (int f : t.factors) mats.push_back(is_pow2(f) ? Mat::Zero(f, 1) : hadamard_matrix(f));
  const double norm = 1.0 / std::sqrt(double(b));
  Mat out(x.rows(), x.cols());
  std::vector<double> v(b), tmp;
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (int b0 = 0; b0 < t.size; b0 += b) {
      for (int i = 0; i < b; ++i) {
        const double s = !transpose && !t.signs.empty() ? double(t.signs[b0 + i]) : 1.0;
        v[i] = double(x(r, b0 + i)) * s;
      }
      // T = diag(s)·(F0 ⊗ F1 ⊗ ...)/√b: factor k acts on axis k of [f0, f1, ...].
      int outer = 1;
      for (size_t k = 0; k < mats.size(); ++k) {
        const int order = t.factors[k];
        const int inner = b / outer / order;
        apply_factor(v, mats[k], outer, inner, transpose, tmp);
        outer *= order;
      }
      for (int i = 0; i < b; ++i) {
        const double s = transpose && !t.signs.empty() ? double(t.signs[b0 + i]) : 1.0;
        out(r, b0 + i) = float(v[i] * norm * s);
      }
    }
  return out;
}

}  // namespace

int InputTransform::block() const {
  int b = 1;
  for (int f : factors) b *= f;
  return b;
}

Mat InputTransform::apply(const Mat& x) const {
  PTQ_ASSERT(x.cols() == size);
  switch (kind) {
    case Kind::kHadamard: return hadamard_rows(*this, x, false);
    case Kind::kDense: return (x.cast<double>() * dense.cast<double>()).cast<float>();
    case Kind::kScale: return x * scale.asDiagonal();
  }
  return x;
}

Mat InputTransform::matrix() const {
  switch (kind) {
    case Kind::kHadamard: return hadamard_rows(*this, Mat::Identity(size, size), false);
    case Kind::kDense: return dense;
    case Kind::kScale: return Mat(scale.asDiagonal());
  }
  return Mat();
}

Mat InputTransform::fold_into_weight(const Mat& w) const {
  PTQ_ASSERT(w.cols() == size);
  switch (kind) {
    case Kind::kHadamard: return hadamard_rows(*this, w, false);  // T⁻ᵀ = T
    case Kind::kDense: {
      // W·T⁻ᵀ = (T⁻¹·Wᵀ)ᵀ
      Eigen::MatrixXd wt = w.cast<double>().transpose();
      Eigen::MatrixXd sol = dense.cast<double>().partialPivLu().solve(wt);
      return sol.transpose().cast<float>();
    }
    case Kind::kScale: return (w.cast<double>() * scale.cast<double>().cwiseInverse().asDiagonal()).cast<float>();
  }
  return w;
}

Mat InputTransform::unfold_from_weight(const Mat& w) const {
  PTQ_ASSERT(w.cols() == size);
  switch (kind) {
    case Kind::kHadamard: return hadamard_rows(*this, w, true);  // W·Tᵀ
    case Kind::kDense: return (w.cast<double>() * dense.cast<double>().transpose()).cast<float>();
    case Kind::kScale: return w * scale.asDiagonal();
  }
  return w;
}

bool operator==(const InputTransform& a, const InputTransform& b) {
  return a.kind == b.kind && a.size == b.size && a.factors == b.factors && a.signs == b.signs &&
         a.dense == b.dense && a.scale == b.scale;
}

// ---- QuantizedLayer -------------------------------------------------------------------------

QuantizedLayer QuantizedLayer::from_grid(GridCodes g) {
  QuantizedLayer l;
  l.grid = std::move(g);
  return l;
}

Mat QuantizedLayer::stored_weight() const {
  Mat w = grid.dequantize();
  if (sparse) sparse->add_to(w);
  if (low_rank) w += low_rank->product();
  return w;
}

Mat QuantizedLayer::effective_weight() const {
  Mat w = stored_weight();
  return input_transform ? input_transform->unfold_from_weight(w) : w;
}

namespace {

bool sym_zero_implied(const GridCodes& g) {
  if (g.rule != OffsetRule::kZeroPoint || !g.grid.sym) return false;
  const float z = float((g.grid.max_q() + 1) / 2);
  for (Eigen::Index i = 0; i < g.zeros.size(); ++i)
    if (g.zeros.data()[i] != z) return false;
  return true;
}

double coded_bits(const CodedStatistic& c) {
  const double second = double(c.scale2.size()) * 16 + (c.stored_zero2 ? double(c.zero2.size()) * 16 : 0);
  return double(c.codes.size()) * c.bits + second;
}

}  // namespace

double QuantizedLayer::storage_bits() const {
  const double n = rows(), k = cols(), stats = double(grid.scales.size());
  double bits = n * k * grid.grid.bits;
  bits += grid.coded_scales ? coded_bits(*grid.coded_scales) : stats * 16;
  if (grid.coded_zeros) bits += coded_bits(*grid.coded_zeros);
  else if (sym_zero_implied(grid)) bits += 0;
  else if (grid.integer_zeros()) bits += stats * grid.grid.bits;
  else bits += stats * 16;
  if (!grid.natural_order()) bits += k * 32;
  if (sparse) bits += 32.0 * (n + 1) + double(sparse->nnz()) * ((k <= 32768 ? 16 : 32) + 16);
  if (low_rank) bits += double(low_rank->rank()) * (n + k) * low_rank->bits;
  if (input_transform) {
    const InputTransform& t = *input_transform;
    if (t.kind == InputTransform::Kind::kHadamard) bits += t.signs.empty() ? 0 : t.size;
    else if (t.kind == InputTransform::Kind::kDense) bits += 32.0 * t.size * t.size;
    else bits += 32.0 * t.size;
  }
  return bits;
}

std::string QuantizedLayer::part_names() const {
  std::string s = "grid";
  if (grid.coded_scales || grid.coded_zeros) s += "+coded_statistics";
  if (sparse) s += "+sparse";
  if (low_rank) s += "+low_rank";
  if (input_transform) s += "+input_transform";
  return s;
}

// ---- Serialisation --------------------------------------------------------------------------
// Tensors (suffixes) and their storage:
//   grid.codes            U8  [ceil(N·K·bits/8)]  LSB-first bit stream of the codes, row-major
//   grid.scales           F16 [N, G] (F32 when a value is not fp16-exact)   absent when coded
//   grid.zeros            U8 bit stream [ceil(N·G·bits/8)] of integer zero points, or F16/F32
//                         [N, G] for fractional zeros and additive offsets; absent for a
//                         symmetric grid whose zeros are all 2^(bits−1), or when coded
//   grid.g_idx            I32 [K]                 absent in natural order
//   grid.{scales,zeros}.codes   U8 bit stream [ceil(N·G·cbits/8)]
//   grid.{scales,zeros}.scale2  F16 [ceil(N/rb), ceil(G/gb)];  .zero2 likewise when stored
//   sparse.row_offsets    I32 [N + 1];  sparse.col_ids I16 (K ≤ 32768) or I32 [nnz];  sparse.values F16 [nnz]
//   low_rank.l1           F16 [N, r];  low_rank.l2 F16 [r, K]
//   input_transform.signs U8 [ceil(K/8)] bit stream (1 = −1);  .dense F32 [K, K];  .scale F32 [K]
// The descriptor (JSON) holds the scalars: shape, bits, group size, rule, factors, ranks.
namespace {

bool f16_exact(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (f16_to_f32(f32_to_f16(v[i])) != v[i] && !std::isnan(v[i])) return false;
  return true;
}

LayerTensor float_tensor(std::string name, const float* v, std::vector<int64_t> shape, bool allow_f32) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  LayerTensor t{std::move(name), DType::F16, std::move(shape), {}};
  if (allow_f32 && !f16_exact(v, n)) {
    t.dtype = DType::F32;
    t.bytes.resize(n * 4);
    std::memcpy(t.bytes.data(), v, n * 4);
    return t;
  }
  t.bytes.resize(n * 2);
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_f16(v[i]);
    std::memcpy(t.bytes.data() + 2 * i, &h, 2);
  }
  return t;
}

template <typename T>
LayerTensor int_tensor(std::string name, DType dtype, const std::vector<T>& v, std::vector<int64_t> shape) {
  LayerTensor t{std::move(name), dtype, std::move(shape), {}};
  const size_t w = dtype_size(dtype);
  t.bytes.resize(v.size() * w);
  for (size_t i = 0; i < v.size(); ++i) {
    if (w == 4) { const int32_t x = int32_t(v[i]); std::memcpy(t.bytes.data() + 4 * i, &x, 4); }
    else if (w == 2) { const int16_t x = int16_t(v[i]); std::memcpy(t.bytes.data() + 2 * i, &x, 2); }
    else t.bytes[i] = uint8_t(v[i]);
  }
  return t;
}

LayerTensor stream_tensor(std::string name, const std::vector<uint8_t>& stream) {
  return {std::move(name), DType::U8, {int64_t(stream.size())}, stream};
}

void add_coded(std::vector<LayerTensor>& out, const std::string& base, const CodedStatistic& c) {
  out.push_back(stream_tensor(base + ".codes", bitstream::pack(c.codes.data(), c.codes.size(), c.bits)));
  out.push_back(float_tensor(base + ".scale2", c.scale2.data(), {c.scale2.rows(), c.scale2.cols()}, false));
  if (c.stored_zero2)
    out.push_back(float_tensor(base + ".zero2", c.zero2.data(), {c.zero2.rows(), c.zero2.cols()}, false));
}

nlohmann::json coded_json(const CodedStatistic& c) {
  nlohmann::json j = {{"bits", c.bits}, {"row_block", c.row_block}, {"group_block", c.group_block},
                      {"stored_zero2", c.stored_zero2}};
  if (!c.stored_zero2 && c.implied_zero2 != 0.0f) j["implied_zero2"] = c.implied_zero2;
  return j;
}

}  // namespace

std::vector<LayerTensor> QuantizedLayer::to_tensors() const {
  const GridCodes& g = grid;
  const int64_t n = g.rows, k = g.cols, groups = g.scales.cols();
  std::vector<LayerTensor> out;
  out.push_back(stream_tensor("grid.codes", bitstream::pack(g.q.data(), g.q.size(), g.grid.bits)));
  if (g.coded_scales) add_coded(out, "grid.scales", *g.coded_scales);
  else out.push_back(float_tensor("grid.scales", g.scales.data(), {n, groups}, true));
  if (g.coded_zeros) {
    add_coded(out, "grid.zeros", *g.coded_zeros);
  } else if (!sym_zero_implied(g)) {
    if (g.integer_zeros()) {
      std::vector<uint8_t> z(size_t(g.zeros.size()));
      for (size_t i = 0; i < z.size(); ++i) z[i] = uint8_t(g.zeros.data()[i]);
      out.push_back(stream_tensor("grid.zeros", bitstream::pack(z.data(), z.size(), g.grid.bits)));
    } else {
      out.push_back(float_tensor("grid.zeros", g.zeros.data(), {n, groups}, true));
    }
  }
  if (!g.natural_order()) out.push_back(int_tensor("grid.g_idx", DType::I32, g.g_idx, {k}));
  if (sparse) {
    out.push_back(int_tensor("sparse.row_offsets", DType::I32, sparse->row_offsets, {n + 1}));
    out.push_back(int_tensor("sparse.col_ids", k <= 32768 ? DType::I16 : DType::I32, sparse->col_ids,
                             {sparse->nnz()}));
    out.push_back(float_tensor("sparse.values", sparse->values.data(), {sparse->nnz()}, false));
  }
  if (low_rank) {
    out.push_back(float_tensor("low_rank.l1", low_rank->l1.data(), {n, low_rank->rank()}, false));
    out.push_back(float_tensor("low_rank.l2", low_rank->l2.data(), {low_rank->rank(), k}, false));
  }
  if (input_transform) {
    const InputTransform& t = *input_transform;
    if (!t.signs.empty()) {
      std::vector<uint8_t> neg(t.signs.size());
      for (size_t i = 0; i < neg.size(); ++i) neg[i] = t.signs[i] < 0 ? 1 : 0;
      out.push_back(stream_tensor("input_transform.signs", bitstream::pack(neg.data(), neg.size(), 1)));
    }
    if (t.kind == InputTransform::Kind::kDense) {
      LayerTensor d{"input_transform.dense", DType::F32, {t.size, t.size}, {}};
      d.bytes.resize(size_t(t.size) * t.size * 4);
      std::memcpy(d.bytes.data(), t.dense.data(), d.bytes.size());
      out.push_back(std::move(d));
    }
    if (t.kind == InputTransform::Kind::kScale) {
      LayerTensor d{"input_transform.scale", DType::F32, {t.size}, {}};
      d.bytes.resize(size_t(t.size) * 4);
      std::memcpy(d.bytes.data(), t.scale.data(), d.bytes.size());
      out.push_back(std::move(d));
    }
  }
  return out;
}

std::string QuantizedLayer::descriptor() const {
  const GridCodes& g = grid;
  nlohmann::json j = {{"rows", g.rows},
                      {"cols", g.cols},
                      {"bits", g.grid.bits},
                      {"group_size", g.grid.group_size},
                      {"sym", g.grid.sym},
                      {"groups", g.scales.cols()},
                      {"rule", offset_rule_name(g.rule)}};
  if (g.coded_scales) j["coded_scales"] = coded_json(*g.coded_scales);
  if (g.coded_zeros) j["coded_zeros"] = coded_json(*g.coded_zeros);
  if (sparse) j["sparse"] = {{"nnz", sparse->nnz()}};
  if (low_rank) j["low_rank"] = {{"rank", low_rank->rank()}, {"bits", low_rank->bits}};
  if (input_transform) {
    const InputTransform& t = *input_transform;
    static const char* kKinds[] = {"hadamard", "dense", "scale"};
    j["input_transform"] = {{"kind", kKinds[int(t.kind)]}, {"size", t.size}, {"factors", t.factors},
                            {"signs", !t.signs.empty()}};
  }
  return j.dump();
}

namespace {

// Reads `from_tensors` input with every check a file needs: names, dtypes, shapes, ranges.
class PartReader {
 public:
  PartReader(const std::string& where, const std::vector<LayerTensor>& tensors) : where_(where) {
    for (const auto& t : tensors) by_name_[t.name] = &t;
  }
  [[noreturn]] void fail(const std::string& what) const { throw Error(where_ + ": " + what); }
  bool has(const std::string& name) const { return by_name_.count(name) != 0; }
  const LayerTensor& get(const std::string& name) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) fail("missing part '" + name + "'");
    used_.push_back(name);
    return *it->second;
  }
  void expect_shape(const LayerTensor& t, const std::vector<int64_t>& shape) const {
    if (t.shape != shape) fail("part '" + t.name + "' has the wrong shape");
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    if (t.bytes.size() != n * dtype_size(t.dtype)) fail("part '" + t.name + "' has the wrong byte size");
  }
  std::vector<uint32_t> stream(const std::string& name, size_t count, int bits) const {
    const LayerTensor& t = get(name);
    if (t.dtype != DType::U8) fail("part '" + name + "' must be U8");
    expect_shape(t, {int64_t(bitstream::bytes_for(count, bits))});
    std::vector<uint32_t> v(count);
    for (size_t i = 0; i < count; ++i) v[i] = bitstream::get(t.bytes.data(), i, bits);
    return v;
  }
  Mat floats(const std::string& name, int64_t rows, int64_t cols, bool allow_f32) const {
    const LayerTensor& t = get(name);
    if (t.dtype != DType::F16 && !(allow_f32 && t.dtype == DType::F32))
      fail("part '" + name + "' must be F16" + (allow_f32 ? " or F32" : ""));
    expect_shape(t, cols < 0 ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols});
    Mat m(rows, std::max<int64_t>(cols, 1));
    for (Eigen::Index i = 0; i < m.size(); ++i) {
      if (t.dtype == DType::F32) {
        std::memcpy(m.data() + i, t.bytes.data() + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, t.bytes.data() + 2 * i, 2);
        m.data()[i] = f16_to_f32(h);
      }
      if (!std::isfinite(m.data()[i])) fail("part '" + name + "' holds a non-finite value");
    }
    return m;
  }
  std::vector<int32_t> ints(const std::string& name, int64_t count, bool allow_i16) const {
    const LayerTensor& t = get(name);
    if (t.dtype != DType::I32 && !(allow_i16 && t.dtype == DType::I16)) fail("part '" + name + "' must be I32");
    expect_shape(t, {count});
    std::vector<int32_t> v(static_cast<size_t>(count));
    for (size_t i = 0; i < v.size(); ++i) {
      if (t.dtype == DType::I32) {
        std::memcpy(&v[i], t.bytes.data() + 4 * i, 4);
      } else {
        int16_t x;
        std::memcpy(&x, t.bytes.data() + 2 * i, 2);
        v[i] = x;
      }
    }
    return v;
  }
  void check_all_used() const {
    for (const auto& [name, t] : by_name_)
      if (std::find(used_.begin(), used_.end(), name) == used_.end()) fail("unexpected part '" + name + "'");
  }

 private:
  std::string where_;
  std::map<std::string, const LayerTensor*> by_name_;
  mutable std::vector<std::string> used_;
};

int json_int(const PartReader& r, const nlohmann::json& j, const char* key, int64_t lo, int64_t hi) {
  if (!j.contains(key) || !j[key].is_number_integer()) r.fail(std::string("descriptor needs integer '") + key + "'");
  const int64_t v = j[key].get<int64_t>();
  if (v < lo || v > hi)
    r.fail(std::string("descriptor '") + key + "' = " + std::to_string(v) + " is outside [" + std::to_string(lo) +
           ", " + std::to_string(hi) + "]");
  return int(v);
}

bool json_bool(const PartReader& r, const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_boolean()) r.fail(std::string("descriptor needs boolean '") + key + "'");
  return j[key].get<bool>();
}

CodedStatistic read_coded(const PartReader& r, const nlohmann::json& j, const std::string& base, int rows,
                          int groups) {
  if (!j.is_object()) r.fail("descriptor '" + base + "' must be an object");
  CodedStatistic c;
  c.bits = json_int(r, j, "bits", 1, 8);
  c.row_block = json_int(r, j, "row_block", 1, rows);
  c.group_block = json_int(r, j, "group_block", 1, groups);
  c.stored_zero2 = json_bool(r, j, "stored_zero2");
  const auto codes = r.stream(base + ".codes", size_t(rows) * groups, c.bits);
  c.codes.assign(codes.begin(), codes.end());
  const int64_t r2 = (rows + c.row_block - 1) / c.row_block, g2 = (groups + c.group_block - 1) / c.group_block;
  c.scale2 = r.floats(base + ".scale2", r2, g2, false);
  if (j.contains("implied_zero2")) {
    if (c.stored_zero2 || !j["implied_zero2"].is_number() || !std::isfinite(j["implied_zero2"].get<double>()))
      r.fail("descriptor '" + base + "': implied_zero2 must be a finite number, and only without stored_zero2");
    c.implied_zero2 = j["implied_zero2"].get<float>();
  }
  c.zero2 = c.stored_zero2 ? r.floats(base + ".zero2", r2, g2, false) : Mat::Constant(r2, g2, c.implied_zero2);
  return c;
}

Mat decode_all(const CodedStatistic& c, int rows, int groups) {
  Mat m(rows, groups);
  for (int i = 0; i < rows; ++i)
    for (int g = 0; g < groups; ++g) m(i, g) = c.decode(i, g, groups);
  return m;
}

}  // namespace

QuantizedLayer QuantizedLayer::from_tensors(const std::string& where, const std::string& descriptor,
                                            const std::vector<LayerTensor>& tensors) {
  PartReader r(where, tensors);
  nlohmann::json j = nlohmann::json::parse(descriptor, nullptr, false);
  if (!j.is_object()) r.fail("the layer descriptor is not a JSON object");
  constexpr int64_t kMaxDim = int64_t(1) << 24;
  QuantizedLayer l;
  GridCodes& g = l.grid;
  g.rows = json_int(r, j, "rows", 1, kMaxDim);
  g.cols = json_int(r, j, "cols", 1, kMaxDim);
  if (int64_t(g.rows) * g.cols > (int64_t(1) << 34)) r.fail("the layer is larger than ptq reads");
  g.grid.bits = json_int(r, j, "bits", 1, 8);
  g.grid.group_size = json_int(r, j, "group_size", -1, g.cols);
  if (g.grid.group_size == 0) r.fail("descriptor 'group_size' must be positive or -1");
  g.grid.sym = json_bool(r, j, "sym");
  const int groups = json_int(r, j, "groups", 1, g.cols);
  if (!j.contains("rule") || !j["rule"].is_string()) r.fail("descriptor needs string 'rule'");
  const std::string rule = j["rule"].get<std::string>();
  if (rule == "zero_point") g.rule = OffsetRule::kZeroPoint;
  else if (rule == "additive") g.rule = OffsetRule::kAdditive;
  else r.fail("descriptor 'rule' must be zero_point or additive, got '" + rule + "'");
  g.grid.additive = g.rule == OffsetRule::kAdditive;

  const auto codes = r.stream("grid.codes", size_t(g.rows) * g.cols, g.grid.bits);
  g.q.assign(codes.begin(), codes.end());
  if (j.contains("coded_scales")) {
    g.coded_scales = read_coded(r, j["coded_scales"], "grid.scales", g.rows, groups);
    g.scales = decode_all(*g.coded_scales, g.rows, groups);
  } else {
    g.scales = r.floats("grid.scales", g.rows, groups, true);
  }
  if (j.contains("coded_zeros")) {
    g.coded_zeros = read_coded(r, j["coded_zeros"], "grid.zeros", g.rows, groups);
    g.zeros = decode_all(*g.coded_zeros, g.rows, groups);
  } else if (!r.has("grid.zeros")) {
    if (g.rule != OffsetRule::kZeroPoint || !g.grid.sym) r.fail("missing part 'grid.zeros'");
    g.zeros = Mat::Constant(g.rows, groups, float((g.grid.max_q() + 1) / 2));
  } else if (r.get("grid.zeros").dtype == DType::U8) {
    if (g.rule != OffsetRule::kZeroPoint) r.fail("additive offsets must be stored as floats");
    const auto z = r.stream("grid.zeros", size_t(g.rows) * groups, g.grid.bits);
    g.zeros.resize(g.rows, groups);
    for (size_t i = 0; i < z.size(); ++i) g.zeros.data()[i] = float(z[i]);
  } else {
    g.zeros = r.floats("grid.zeros", g.rows, groups, true);
  }
  if (r.has("grid.g_idx")) {
    g.g_idx = r.ints("grid.g_idx", g.cols, false);
    for (int32_t v : g.g_idx)
      if (v < 0 || v >= groups) r.fail("part 'grid.g_idx' names a group outside [0, " + std::to_string(groups) + ")");
  } else {
    if (groups != g.grid.num_groups(g.cols)) r.fail("descriptor 'groups' does not match the group size");
    g.g_idx.resize(g.cols);
    for (int c = 0; c < g.cols; ++c) g.g_idx[c] = g.grid.group_size <= 0 ? 0 : c / g.grid.group_size;
  }
  for (uint8_t code : g.q)
    if (code > g.grid.max_q()) r.fail("a code exceeds 2^bits − 1");

  if (j.contains("sparse")) {
    const int nnz = json_int(r, j["sparse"], "nnz", 0, int64_t(g.rows) * g.cols);
    SparseResidual s;
    s.row_offsets = r.ints("sparse.row_offsets", int64_t(g.rows) + 1, false);
    s.col_ids = r.ints("sparse.col_ids", nnz, true);
    const Mat v = r.floats("sparse.values", nnz, -1, false);
    s.values.assign(v.data(), v.data() + nnz);
    if (s.row_offsets.front() != 0 || s.row_offsets.back() != nnz) r.fail("sparse row offsets do not span the values");
    for (int i = 0; i < g.rows; ++i) {
      if (s.row_offsets[i + 1] < s.row_offsets[i]) r.fail("sparse row offsets decrease");
      for (int32_t p = s.row_offsets[i]; p < s.row_offsets[i + 1]; ++p)
        if (s.col_ids[p] < 0 || s.col_ids[p] >= g.cols || (p > s.row_offsets[i] && s.col_ids[p] <= s.col_ids[p - 1]))
          r.fail("sparse column ids must ascend within [0, cols) in each row");
    }
    l.sparse = std::move(s);
  }
  if (j.contains("low_rank")) {
    const int rank = json_int(r, j["low_rank"], "rank", 1, std::min(g.rows, g.cols));
    if (json_int(r, j["low_rank"], "bits", 16, 16) != 16) r.fail("only fp16 low-rank factors are read");
    LowRankBranch b;
    b.l1 = r.floats("low_rank.l1", g.rows, rank, false);
    b.l2 = r.floats("low_rank.l2", rank, g.cols, false);
    l.low_rank = std::move(b);
  }
  if (j.contains("input_transform")) {
    const nlohmann::json& t = j["input_transform"];
    if (!t.is_object() || !t.contains("kind") || !t["kind"].is_string()) r.fail("descriptor 'input_transform' needs a kind");
    InputTransform x;
    x.size = json_int(r, t, "size", g.cols, g.cols);
    const std::string kind = t["kind"].get<std::string>();
    if (kind == "hadamard") {
      x.kind = InputTransform::Kind::kHadamard;
      if (!t.contains("factors") || !t["factors"].is_array() || t["factors"].size() > 8)
        r.fail("a Hadamard transform needs its factors");
      int64_t block = 1;
      for (const auto& f : t["factors"]) {
        if (!f.is_number_integer() || f.get<int64_t>() < 1 || f.get<int64_t>() > x.size ||
            !hadamard_factor_supported(int(f.get<int64_t>())))
          r.fail("unsupported Hadamard factor");
        x.factors.push_back(int(f.get<int64_t>()));
        block *= x.factors.back();
        if (block > x.size) r.fail("Hadamard factors exceed the layer width");
      }
      if (x.size % block != 0) r.fail("the Hadamard block does not divide the layer width");
      if (json_bool(r, t, "signs")) {
        const auto neg = r.stream("input_transform.signs", size_t(x.size), 1);
        x.signs.resize(neg.size());
        for (size_t i = 0; i < neg.size(); ++i) x.signs[i] = neg[i] ? -1 : 1;
      }
    } else if (kind == "dense") {
      x.kind = InputTransform::Kind::kDense;
      x.dense = r.floats("input_transform.dense", x.size, x.size, true);
    } else if (kind == "scale") {
      x.kind = InputTransform::Kind::kScale;
      const Mat s = r.floats("input_transform.scale", x.size, -1, true);
      x.scale = Eigen::Map<const Vec>(s.data(), x.size);
    } else {
      r.fail("unknown input transform kind '" + kind + "'");
    }
    l.input_transform = std::move(x);
  }
  r.check_all_used();
  return l;
}

bool operator==(const QuantizedLayer& a, const QuantizedLayer& b) {
  return a.grid == b.grid && a.sparse == b.sparse && a.low_rank == b.low_rank &&
         a.input_transform == b.input_transform;
}

}  // namespace ptq
