#include "ptq/linear.h"

#include "ptq/error.h"

namespace ptq {

Mat Linear::forward(const Mat& x) const {
  PTQ_ASSERT(x.cols() == cols(), "linear input width does not match the weight");
  Mat y;
  if (input_transform) {
    PTQ_ASSERT(!packed);
    y.noalias() = input_transform->apply(x) * w.transpose();
  } else if (packed) {
    y.resize(x.rows(), packed->rows());
    packed->matmul(x.data(), int(x.rows()), y.data());
  } else {
    y.noalias() = x * w.transpose();
  }
  if (bias.size()) y.rowwise() += bias.transpose();
  return y;
}

}  // namespace ptq
