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

enum class DType : uint8_t { F32, F16, BF16, I32, I8, U8 };

const char* dtype_name(DType d);
size_t dtype_size(DType d);
// Returns false when `name` is not one of the safetensors dtypes ptq reads.
bool parse_dtype(const std::string& name, DType* out);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, saturating to +-inf like IEEE
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even

// True when no element is NaN or infinite (multi-threaded; Eigen's allFinite() evaluates
// x - x element by element and took ~0.2 s on a 4096² fp64 matrix).
bool all_finite(const float* x, size_t n);
bool all_finite(const double* x, size_t n);

}  // namespace ptq
