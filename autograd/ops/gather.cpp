// Gathers with their backwards. Each backward is a scatter-add: an input element read by several
// output positions receives the sum of their gradients. No kernel scatters, so the sums run on the
// host in f64 and are rounded once to the input's dtype.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <functional>

namespace dtensor::autograd {

namespace detail {
Tensor scatter_add_rows(const Tensor& rows, const std::vector<int64_t>& row_of, int64_t offset, int64_t size,
                        DType dtype, Device device) {
  int64_t width = rows.size(1);
  Tensor in = rows.to(Device::cpu()).to(DType::F64).contiguous();
  Tensor sums = Tensor::zeros({size, width}, DType::F64);
  const double* from = in.data<double>();
  double* to = sums.data<double>();
  for (size_t i = 0; i < row_of.size(); ++i) {
    const int64_t target_row = row_of[i] - offset;
    if (target_row < 0 || target_row >= size) continue;
    const double* row = from + int64_t(i) * width;
    double* target = to + target_row * width;
    std::transform(row, row + width, target, target, std::plus<>());
  }
  return sums.to(dtype).to(device);
}
}  // namespace detail

namespace {
// The dims of an n-dim tensor with `dim` moved to the front, and the permutation undoing it.
std::vector<int64_t> dim_first(int64_t dim, int64_t ndim) {
  std::vector<int64_t> order{dim};
  for (int64_t d = 0; d < ndim; ++d) {
    if (d != dim) order.push_back(d);
  }
  return order;
}

std::vector<int64_t> inverse_of(const std::vector<int64_t>& order) {
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[size_t(order[i])] = int64_t(i);
  return inverse;
}

// Element j of each row (along the last dim) of `grad` added at position index[row, j] of that
// row of a zero tensor of `row_length` per row: the adjoint of gathering along the last dim.
Tensor scatter_add_along_last(const Tensor& grad, const Tensor& index, int64_t row_length, DType dtype, Device device) {
  Tensor g = grad.to(Device::cpu()).to(DType::F64).contiguous();
  std::vector<int64_t> positions = index.to_vector<int64_t>();
  int64_t per_row = grad.size(-1), rows = per_row == 0 ? 0 : grad.numel() / per_row;
  Shape out_shape = grad.shape();
  out_shape.back() = row_length;
  Tensor sums = Tensor::zeros(out_shape, DType::F64);
  const double* from = g.data<double>();
  double* to = sums.data<double>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < per_row; ++j) to[r * row_length + positions[r * per_row + j]] += from[r * per_row + j];
  }
  return sums.to(dtype).to(device);
}
}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  Tensor out = dtensor::embedding(weight, ids);
  if (!should_record(weight)) return out;
  return record("embedding", {weight}, {ids}, out,
                [vocab = weight.size(0), dtype = weight.dtype(), device = weight.device()](const FunctionNode& node,
                                                                                           const Tensor& grad) {
                  Tensor rows = grad.reshape({-1, grad.size(-1)});
                  std::vector<int64_t> ids = node.saved(0).to_vector<int64_t>();
                  return Grads{detail::scatter_add_rows(rows, ids, 0, vocab, dtype, device)};
                });
}

// Slices of the gradient along dim go back to the slices of `a` the index named.
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  Tensor out = dtensor::index_select(a, dim, index);
  if (!should_record(a)) return out;
  int64_t d = normalize_dim(dim, a.dim(), "index_select");
  return record(
      "index_select", {a}, {index}, out,
      [d, shape = a.shape(), dtype = a.dtype(), device = a.device()](const FunctionNode& node, const Tensor& grad) {
        std::vector<int64_t> order = dim_first(d, int64_t(shape.size()));
        Tensor rows = grad.permute(order).reshape({grad.size(d), -1});
        Tensor sums =
            detail::scatter_add_rows(rows, node.saved(0).to_vector<int64_t>(), 0, shape[size_t(d)], dtype, device);
        Shape moved_shape;
        for (int64_t axis : order) moved_shape.push_back(shape[size_t(axis)]);
        return Grads{sums.reshape(moved_shape).permute(inverse_of(order))};
      });
}

// The values' gradient goes back to the positions topk took them from; the indices get none.
std::pair<Tensor, Tensor> topk(const Tensor& values, int64_t k, int64_t dim) {
  auto [top, indices] = dtensor::topk(values, k, dim);
  if (!should_record(values)) return {top, indices};
  int64_t d = normalize_dim(dim, values.dim(), "topk");
  Tensor recorded = record("topk", {values}, {indices}, top,
                           [d, length = values.size(d), dtype = values.dtype(), device = values.device()](
                               const FunctionNode& node, const Tensor& grad) {
                             int64_t last = grad.dim() - 1;
                             Tensor moved = scatter_add_along_last(
                                 grad.transpose(d, last), node.saved(0).transpose(d, last), length, dtype, device);
                             return Grads{moved.transpose(d, last)};
                           });
  return {recorded, indices};
}

}  // namespace dtensor::autograd
