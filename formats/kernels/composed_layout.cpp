// Builds the composed linear's kernel-side layouts (composed_kernels.h) from the core's layer
// parts, validating everything a file could get wrong.
#include <cmath>
#include <string>

#include "formats/kernels/composed_kernels.h"
#include "ptq/error.h"

namespace ptq::kernels {

namespace {

bool is_power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

PackedHadamard pack_hadamard(const std::string& where, const InputTransform& t) {
  if (t.factors.empty()) throw Error(where + ": a Hadamard transform needs at least one factor");
  PackedHadamard h;
  h.size = t.size;
  int64_t block = 1;
  for (int f : t.factors) {
    if (f < 1 || !hadamard_factor_supported(f))
      throw Error(where + ": unsupported Hadamard factor " + std::to_string(f));
    block *= f;
    if (block > t.size) throw Error(where + ": the Hadamard factors exceed the layer width " + std::to_string(t.size));
  }
  h.block = int(block);
  if (t.size % h.block != 0)
    throw Error(where + ": the Hadamard block " + std::to_string(h.block) + " does not divide the width " +
                std::to_string(t.size));
  int outer = 1;
  for (int f : t.factors) {
    HadamardFactor hf;
    hf.order = f;
    hf.outer = outer;
    hf.inner = h.block / outer / f;
    hf.power_of_two = is_power_of_two(f);
    hf.stride = pad_floats(f);
    if (!hf.power_of_two) {
      const Mat m = hadamard_matrix(f);
      hf.matrix.assign(size_t(f) * hf.stride, 0.0f);
      for (int i = 0; i < f; ++i)
        for (int j = 0; j < f; ++j) hf.matrix[size_t(i) * hf.stride + j] = m(i, j);
    }
    h.factors.push_back(std::move(hf));
    outer *= f;
  }
  if (!t.signs.empty()) {
    if (int(t.signs.size()) != t.size)
      throw Error(where + ": expected " + std::to_string(t.size) + " Hadamard signs, got " + std::to_string(t.signs.size()));
    h.signs.resize(t.signs.size());
    for (size_t i = 0; i < t.signs.size(); ++i) {
      if (t.signs[i] != 1 && t.signs[i] != -1) throw Error(where + ": Hadamard sign " + std::to_string(i) + " is not ±1");
      h.signs[i] = float(t.signs[i]);
    }
  }
  h.norm = float(1.0 / std::sqrt(double(h.block)));
  return h;
}

bool fp16_exact(const Mat& m) {
  for (Eigen::Index i = 0; i < m.size(); ++i)
    if (f16_to_f32(f32_to_f16(m.data()[i])) != m.data()[i]) return false;
  return true;
}

// mᵀ [cols][stride], zero-padded, each value through `store`.
template <class T, class Store>
std::vector<T> transposed(const Mat& m, int stride, Store store) {
  std::vector<T> t(size_t(m.cols()) * stride, store(0.0f));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) t[size_t(j) * stride + i] = store(m(i, j));
  return t;
}

void require_finite(const std::string& where, const char* what, const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) throw Error(where + ": " + what + " holds a non-finite value at " + std::to_string(i));
}

}  // namespace

PackedTransform pack_transform(const std::string& where, const InputTransform& t, int cols) {
  if (t.size != cols)
    throw Error(where + ": the input transform is for width " + std::to_string(t.size) + ", the layer has " +
                std::to_string(cols) + " columns");
  PackedTransform p;
  p.kind = t.kind;
  p.size = t.size;
  switch (t.kind) {
    case InputTransform::Kind::kHadamard: p.hadamard = pack_hadamard(where, t); break;
    case InputTransform::Kind::kDense:
      if (t.dense.rows() != cols || t.dense.cols() != cols)
        throw Error(where + ": a dense input transform must be [" + std::to_string(cols) + ", " + std::to_string(cols) + "]");
      require_finite(where, "the dense input transform", t.dense.data(), size_t(t.dense.size()));
      p.dense_stride = pad_floats(cols);
      p.dense.assign(size_t(cols) * p.dense_stride, 0.0f);
      for (int i = 0; i < cols; ++i)
        for (int j = 0; j < cols; ++j) p.dense[size_t(i) * p.dense_stride + j] = t.dense(i, j);
      break;
    case InputTransform::Kind::kScale:
      if (t.scale.size() != cols) throw Error(where + ": a scale input transform needs " + std::to_string(cols) + " scales");
      require_finite(where, "the input scale", t.scale.data(), size_t(cols));
      p.scale.assign(t.scale.data(), t.scale.data() + cols);
      break;
  }
  return p;
}

PackedSparse pack_sparse(const std::string& where, const SparseResidual& s, int rows, int cols) {
  if (s.row_offsets.size() != size_t(rows) + 1)
    throw Error(where + ": expected " + std::to_string(rows + 1) + " sparse row offsets, got " +
                std::to_string(s.row_offsets.size()));
  if (s.col_ids.size() != s.values.size())
    throw Error(where + ": the sparse part has " + std::to_string(s.col_ids.size()) + " column ids and " +
                std::to_string(s.values.size()) + " values");
  if (s.row_offsets.front() != 0 || s.row_offsets.back() != int64_t(s.values.size()))
    throw Error(where + ": the sparse row offsets do not span the values");
  for (int r = 0; r < rows; ++r)
    if (s.row_offsets[r + 1] < s.row_offsets[r]) throw Error(where + ": the sparse row offsets decrease at row " + std::to_string(r));
  for (size_t i = 0; i < s.col_ids.size(); ++i)
    if (s.col_ids[i] < 0 || s.col_ids[i] >= cols)
      throw Error(where + ": sparse column id " + std::to_string(s.col_ids[i]) + " is outside [0, " + std::to_string(cols) + ")");
  require_finite(where, "the sparse values", s.values.data(), s.values.size());
  return {rows, cols, s.row_offsets, s.col_ids, s.values};
}

PackedLowRank pack_low_rank(const std::string& where, const LowRankBranch& l, int rows, int cols) {
  const int rank = int(l.l1.cols());
  if (rank < 1 || l.l1.rows() != rows || l.l2.rows() != rank || l.l2.cols() != cols)
    throw Error(where + ": expected low-rank factors [" + std::to_string(rows) + ", r] and [r, " + std::to_string(cols) +
                "], got [" + std::to_string(l.l1.rows()) + ", " + std::to_string(l.l1.cols()) + "] and [" +
                std::to_string(l.l2.rows()) + ", " + std::to_string(l.l2.cols()) + "]");
  require_finite(where, "low-rank factor L1", l.l1.data(), size_t(l.l1.size()));
  require_finite(where, "low-rank factor L2", l.l2.data(), size_t(l.l2.size()));
  PackedLowRank p;
  p.rows = rows;
  p.cols = cols;
  p.rank = rank;
  p.rank_stride = pad_floats(rank);
  p.rows_stride = pad_floats(rows);
  p.half = fp16_exact(l.l1) && fp16_exact(l.l2);
  if (p.half) {
    p.l2t_half = transposed<uint16_t>(l.l2, p.rank_stride, f32_to_f16);
    p.l1t_half = transposed<uint16_t>(l.l1, p.rows_stride, f32_to_f16);
  } else {
    p.l2t = transposed<float>(l.l2, p.rank_stride, [](float v) { return v; });
    p.l1t = transposed<float>(l.l1, p.rows_stride, [](float v) { return v; });
  }
  return p;
}

}  // namespace ptq::kernels
