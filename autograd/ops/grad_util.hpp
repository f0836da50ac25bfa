// Helpers shared by the backward formulas of autograd/ops/.
#pragma once

#include "tensor/ops.hpp"
#include "tensor/tensor.hpp"

#include <vector>

namespace dtensor::autograd::detail {

// The gradient of a tensor of `shape` broadcast to grad's shape: grad summed over the broadcast dims.
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

// f32 for bf16 / f16, else the dtype itself: where composite formulas and reductions run.
DType compute_dtype(DType dtype);
inline Tensor to_compute(const Tensor& t) { return t.to(compute_dtype(t.dtype())); }

// A zero-dim tensor of value, to broadcast against t.
inline Tensor scalar_like(const Tensor& t, double value) { return Tensor::full({}, value, t.dtype(), t.device()); }

// The gradient of reduce(a, dims, keepdim) spread back over a's shape (a broadcast view).
Tensor expand_reduced(const Tensor& grad, const Shape& input_shape, const std::vector<int64_t>& dims, bool keepdim);

// Row i of `rows` [count, width] added into row row_of[i] - offset of a zero [size, width] tensor, in f64 on the
// host, rounded once to dtype on device: the backward of gathering rows. Rows whose target lies outside
// [0, size) contribute nothing, so a rank holding vocab rows [offset, offset + size) of an embedding
// collects exactly the gradient of its own rows.
Tensor scatter_add_rows(const Tensor& rows, const std::vector<int64_t>& row_of, int64_t offset, int64_t size,
                        DType dtype, Device device);

}  // namespace dtensor::autograd::detail
