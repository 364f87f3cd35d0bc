#pragma once
// Dense matrices used across ptq. Weights follow the Hugging Face convention: a linear layer's
// weight is [out_features, in_features], row-major, so a row is one output channel and a group
// runs along the input dimension. Activations are [tokens, features], row-major.
#include <Eigen/Dense>
#include <cstdint>
#include <string>
#include <vector>

namespace ptq {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXf;
using VecD = Eigen::VectorXd;
using MatMap = Eigen::Map<Mat>;
using ConstMatMap = Eigen::Map<const Mat>;

enum class DType : uint8_t { F32, F16, BF16, I32, I16, I8, U8, I64 };

const char* dtype_name(DType d);
size_t dtype_size(DType d);
// Returns false when `name` is not one of the safetensors dtypes ptq reads.
bool parse_dtype(const std::string& name, DType* out);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, saturating to +-inf like IEEE
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even

// Asks the kernel to back [p, p + bytes) with transparent huge pages, before the memory is first
// touched. On the VMs ptq is measured on a 4 KiB page fault costs ~2.6 µs, so first touching a
// K×K fp64 Hessian at K = 11008 (970 MB) took 0.64 s against 0.14 s with 2 MiB pages. Only the
// 2 MiB-aligned interior is advised; a no-op where the kernel lacks MADV_HUGEPAGE.
void advise_huge_pages(void* p, size_t bytes);

// Resizes m (contents undefined) and advises huge pages when the buffer was newly allocated.
template <typename M>
void resize_for_bulk(M& m, Eigen::Index rows, Eigen::Index cols) {
  if (m.rows() == rows && m.cols() == cols) return;
  m.resize(rows, cols);
  advise_huge_pages(m.data(), sizeof(typename M::Scalar) * static_cast<size_t>(m.size()));
}

// True when no element is NaN or infinite (multi-threaded; Eigen's allFinite() evaluates
// x - x element by element and took ~0.2 s on a 4096² fp64 matrix).
bool all_finite(const float* x, size_t n);
bool all_finite(const double* x, size_t n);

}  // namespace ptq
