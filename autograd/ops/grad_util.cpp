#include "autograd/ops/grad_util.hpp"

#include <algorithm>

namespace dtensor::autograd::detail {

Tensor sum_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  int64_t leading = grad.dim() - int64_t(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < leading; ++d) dims.push_back(d);
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (shape[d] == 1 && grad.size(leading + d) != 1) dims.push_back(leading + d);
  }
  Tensor summed = dims.empty() ? grad : dtensor::sum(grad, dims, /*keepdim=*/true);
  return summed.reshape(shape);
}

DType compute_dtype(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16 ? DType::F32 : dtype; }

Tensor expand_reduced(const Tensor& grad, const Shape& input_shape, const std::vector<int64_t>& dims, bool keepdim) {
  int64_t ndim = int64_t(input_shape.size());
  if (!keepdim) {
    std::vector<int64_t> reduced;
    if (dims.empty()) {
      for (int64_t d = 0; d < ndim; ++d) reduced.push_back(d);
    }
    for (int64_t d : dims) reduced.push_back(normalize_dim(d, ndim, "backward"));
    std::sort(reduced.begin(), reduced.end());
    Shape kept_shape = input_shape;
    for (int64_t d : reduced) kept_shape[d] = 1;
    return grad.reshape(kept_shape).expand(input_shape);
  }
  return grad.expand(input_shape);
}

}  // namespace dtensor::autograd::detail
