// embedding with its backward: row i of the weight's gradient sums the output gradients of every
// position whose id is i (a scatter-add, which no kernel provides, so it runs on the host).
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "tensor/ops.hpp"

#include <algorithm>

namespace dtensor::autograd {

namespace {
// Sums the rows of grad [positions, dim] into the rows `ids` name, in f64, rounded once to the weight's dtype.
Tensor scatter_add_rows(const Tensor& grad, const Tensor& ids, const Shape& weight_shape, DType weight_dtype,
                        Device device) {
  Tensor rows = grad.reshape({-1, weight_shape[1]}).to(Device::cpu()).to(DType::F64).contiguous();
  std::vector<int64_t> row_of = ids.to_vector<int64_t>();
  Tensor sums = Tensor::zeros(weight_shape, DType::F64);
  const double* in = rows.data<double>();
  double* out = sums.data<double>();
  int64_t width = weight_shape[1];
  for (size_t position = 0; position < row_of.size(); ++position) {
    const double* from = in + int64_t(position) * width;
    double* to = out + row_of[position] * width;
    std::transform(from, from + width, to, to, [](double g, double s) { return s + g; });
  }
  return sums.to(weight_dtype).to(device);
}
}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  Tensor out = dtensor::embedding(weight, ids);
  if (!should_record(weight)) return out;
  return record("embedding", {weight}, {ids}, out,
                [shape = weight.shape(), dtype = weight.dtype(), device = weight.device()](const FunctionNode& node,
                                                                                           const Tensor& grad) {
                  return Grads{scatter_add_rows(grad, node.saved(0), shape, dtype, device)};
                });
}

}  // namespace dtensor::autograd
