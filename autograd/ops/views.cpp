// Views with their backwards: the gradient of a view is put back where the view reads from.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor::autograd {

namespace {
// Views that only regroup the elements (same order): the gradient takes the input's shape back.
Tensor record_regrouping(const char* name, const Tensor& a, Tensor out) {
  return record(name, {a}, {}, std::move(out),
                [shape = a.shape()](const FunctionNode&, const Tensor& grad) { return Grads{grad.reshape(shape)}; });
}

// Views that read a part of the input: the gradient is zero outside that part.
template <typename PartOf>
Tensor record_part(const char* name, const Tensor& a, Tensor out, PartOf part_of) {
  return record(name, {a}, {}, std::move(out), [shape = a.shape(), part_of](const FunctionNode&, const Tensor& grad) {
    Tensor full = Tensor::zeros(shape, grad.dtype(), grad.device());
    part_of(full).copy_from(grad);
    return Grads{full};
  });
}
}  // namespace

Tensor reshape(const Tensor& a, const Shape& shape) {
  Tensor out = a.reshape(shape);
  return should_record(a) ? record_regrouping("reshape", a, out) : out;
}

Tensor view(const Tensor& a, const Shape& shape) {
  Tensor out = a.view(shape);
  return should_record(a) ? record_regrouping("view", a, out) : out;
}

Tensor flatten(const Tensor& a, int64_t start_dim, int64_t end_dim) {
  Tensor out = a.flatten(start_dim, end_dim);
  return should_record(a) ? record_regrouping("flatten", a, out) : out;
}

Tensor unsqueeze(const Tensor& a, int64_t dim) {
  Tensor out = a.unsqueeze(dim);
  return should_record(a) ? record_regrouping("unsqueeze", a, out) : out;
}

Tensor squeeze(const Tensor& a, int64_t dim) {
  Tensor out = a.squeeze(dim);
  return should_record(a) ? record_regrouping("squeeze", a, out) : out;
}

Tensor contiguous(const Tensor& a) {
  if (a.is_contiguous()) return a;
  Tensor out = a.contiguous();
  return should_record(a) ? record_regrouping("contiguous", a, out) : out;
}

Tensor expand(const Tensor& a, const Shape& shape) {
  Tensor out = a.expand(shape);
  if (!should_record(a)) return out;
  return record("expand", {a}, {}, out, [shape = a.shape()](const FunctionNode&, const Tensor& grad) {
    return Grads{detail::sum_to_shape(grad, shape)};
  });
}

Tensor transpose(const Tensor& a, int64_t dim0, int64_t dim1) {
  Tensor out = a.transpose(dim0, dim1);
  if (!should_record(a)) return out;
  return record("transpose", {a}, {}, out,
                [dim0, dim1](const FunctionNode&, const Tensor& grad) { return Grads{grad.transpose(dim0, dim1)}; });
}

// The gradient moves each dim back: output dim i came from input dim dims[i].
Tensor permute(const Tensor& a, const std::vector<int64_t>& dims) {
  Tensor out = a.permute(dims);
  if (!should_record(a)) return out;
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[normalize_dim(dims[i], a.dim(), "permute")] = int64_t(i);
  return record("permute", {a}, {}, out,
                [inverse](const FunctionNode&, const Tensor& grad) { return Grads{grad.permute(inverse)}; });
}

Tensor narrow(const Tensor& a, int64_t dim, int64_t start, int64_t length) {
  Tensor out = a.narrow(dim, start, length);
  if (!should_record(a)) return out;
  return record_part("narrow", a, out, [=](const Tensor& full) { return full.narrow(dim, start, length); });
}

Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor out = a.slice(dim, start, end, step);
  if (!should_record(a)) return out;
  return record_part("slice", a, out, [=](const Tensor& full) { return full.slice(dim, start, end, step); });
}

Tensor select(const Tensor& a, int64_t dim, int64_t index) {
  Tensor out = a.select(dim, index);
  if (!should_record(a)) return out;
  return record_part("select", a, out, [=](const Tensor& full) { return full.select(dim, index); });
}

}  // namespace dtensor::autograd
