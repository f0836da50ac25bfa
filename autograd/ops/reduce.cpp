// Reductions with their backwards: the output's gradient spread back over the reduced dims.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor::autograd {

using detail::expand_reduced;

namespace {
int64_t reduced_count(const Shape& shape, const std::vector<int64_t>& dims) {
  if (dims.empty()) return shape_numel(shape);
  int64_t count = 1;
  for (int64_t d : dims) count *= shape[normalize_dim(d, int64_t(shape.size()), "mean")];
  return count;
}

// amax / amin: each element equal to its reduction's result takes an equal share of the gradient.
Tensor record_extremum(const char* name, const Tensor& a, const Tensor& out, const std::vector<int64_t>& dims,
                       bool keepdim) {
  return record(name, {a}, {a, out}, out, [dims, keepdim](const FunctionNode& node, const Tensor& grad) {
    const Tensor& a = node.saved(0);
    Tensor is_extremum = dtensor::eq(a, expand_reduced(node.saved(1), a.shape(), dims, keepdim));
    Tensor share = is_extremum.to(a.dtype());
    Tensor ties = dtensor::sum(share, dims, /*keepdim=*/true);
    Tensor grad_per_tie = dtensor::div(expand_reduced(grad, a.shape(), dims, keepdim), ties.expand(a.shape()));
    return Grads{dtensor::mul(grad_per_tie, share)};
  });
}
}  // namespace

Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = dtensor::sum(a, dims, keepdim);
  if (!should_record(a)) return out;
  return record("sum", {a}, {}, out, [shape = a.shape(), dims, keepdim](const FunctionNode&, const Tensor& grad) {
    return Grads{expand_reduced(grad, shape, dims, keepdim)};
  });
}

Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = dtensor::mean(a, dims, keepdim);
  if (!should_record(a)) return out;
  double scale = 1.0 / double(reduced_count(a.shape(), dims));
  return record("mean", {a}, {}, out,
                [shape = a.shape(), dims, keepdim, scale](const FunctionNode&, const Tensor& grad) {
                  return Grads{expand_reduced(dtensor::mul(grad, scale), shape, dims, keepdim)};
                });
}

Tensor amax(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = dtensor::amax(a, dims, keepdim);
  return should_record(a) ? record_extremum("amax", a, out, dims, keepdim) : out;
}

Tensor amin(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = dtensor::amin(a, dims, keepdim);
  return should_record(a) ? record_extremum("amin", a, out, dims, keepdim) : out;
}

}  // namespace dtensor::autograd
