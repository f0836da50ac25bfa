// Tensor-level CUDA ops: argument checks (the CPU ops' rules), operand layout, kernel launch.
#include "tensor/cuda/cuda_ops.hpp"

#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/cuda/strided_walk.hpp"
#include "tensor/kernel_util.hpp"

#include <numeric>

namespace dtensor::cuda {

using kernels::BinaryOp;
using kernels::RowReduce;
using kernels::UnaryOp;

namespace {

// a must be on a CUDA device; every other tensor on the same one.
int device_of(const char* op, std::initializer_list<std::pair<const Tensor*, const char*>> args) {
  const auto& [first, first_name] = *args.begin();
  detail::check_defined(*first, op, first_name);
  const Device device = first->device();
  check<DeviceError>(device.type == DeviceType::CUDA, op, "argument '{}' must be on a CUDA device, got {}", first_name,
                     device);
  check_device_exists(device, op);
  for (const auto& [t, name] : args) {
    detail::check_defined(*t, op, name);
    check<DeviceError>(t->device() == device, op, "argument '{}' is on {}, expected {} (the device of '{}')", name,
                       t->device(), device, first_name);
  }
  return device.index;
}

cudaStream_t stream_of(int device) { return current_stream(device); }

}  // namespace

// Elementwise ----------------------------------------------------------------------------------

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  const int device = device_of(name, {{&a, "a"}, {&b, "b"}});
  detail::check_same_dtype(a, b, name, "a", "b");
  check<DTypeError>(op != BinaryOp::Div || is_floating(a.dtype()), name,
                    "integer division is not built for CUDA tensors (got {}); convert to a floating dtype", a.dtype());
  const Shape shape = detail::broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, kernels::is_comparison(op) ? DType::U8 : a.dtype(), a.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(device);
  auto walk = make_walk<2>(shape, {detail::broadcast_strides(a, shape), detail::broadcast_strides(b, shape)}, name);
  kernels::binary(op, a.data_ptr(), b.data_ptr(), out.data_ptr(), elem_type(a.dtype()), walk, out.numel(),
                  stream_of(device));
  check_launch(name);
  return out;
}

Tensor scalar(UnaryOp op, const Tensor& a, double s, const char* name) {
  const int device = device_of(name, {{&a, "a"}});
  visit_dtype(a.dtype(), [&]<typename T>() { detail::scalar_as<T>(s, name, "s"); });
  Tensor in = a.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(device);
  kernels::unary(op, in.data_ptr(), out.data_ptr(), elem_type(a.dtype()), out.numel(), s, stream_of(device));
  check_launch(name);
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const char* op = "where";
  const int device = device_of(op, {{&cond, "cond"}, {&a, "a"}, {&b, "b"}});
  detail::check_dtype_is(cond, DType::U8, op, "cond");
  detail::check_same_dtype(a, b, op, "a", "b");
  const Shape shape = detail::broadcast_shapes(cond.shape(), detail::broadcast_shapes(a.shape(), b.shape(), op), op);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(device);
  auto walk = make_walk<3>(shape,
                           {detail::broadcast_strides(cond, shape), detail::broadcast_strides(a, shape),
                            detail::broadcast_strides(b, shape)},
                           op);
  kernels::where(cond.data_ptr(), a.data_ptr(), b.data_ptr(), out.data_ptr(), elem_type(a.dtype()), walk, out.numel(),
                 stream_of(device));
  check_launch(op);
  return out;
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  const char* op = "masked_fill";
  const int device = device_of(op, {{&a, "a"}, {&mask, "mask"}});
  detail::check_dtype_is(mask, DType::U8, op, "mask");
  visit_dtype(a.dtype(), [&]<typename T>() { detail::scalar_as<T>(value, op, "value"); });
  const Shape shape = detail::broadcast_shapes(a.shape(), mask.shape(), op);
  check<ShapeError>(shape == a.shape(), op, "mask of shape {} does not broadcast to a's shape {}",
                    shape_str(mask.shape()), shape_str(a.shape()));
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(device);
  auto walk = make_walk<2>(shape, {detail::broadcast_strides(a, shape), detail::broadcast_strides(mask, shape)}, op);
  kernels::masked_fill(a.data_ptr(), mask.data_ptr(), value, out.data_ptr(), elem_type(a.dtype()), walk, out.numel(),
                       stream_of(device));
  check_launch(op);
  return out;
}

Tensor unary(UnaryOp op, const Tensor& a, const char* name) {
  const int device = device_of(name, {{&a, "a"}});
  const bool integer_form = op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Relu;
  if (!integer_form) detail::check_floating(a, name, "a");
  Tensor in = a.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(device);
  kernels::unary(op, in.data_ptr(), out.data_ptr(), elem_type(a.dtype()), out.numel(), 0.0, stream_of(device));
  check_launch(name);
  return out;
}

// Reductions and softmax -------------------------------------------------------------------------

namespace {

// a with the `reduced` dims moved last (kept dims first, both in order), as a contiguous
// [rows, cols] block; rows = product of kept sizes, cols = product of reduced sizes.
Tensor reduced_dims_last(const Tensor& a, const std::vector<bool>& reduced, int64_t& rows, int64_t& cols) {
  std::vector<int64_t> order;
  rows = cols = 1;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (!reduced[size_t(d)]) order.push_back(d), rows *= a.shape()[size_t(d)];
  }
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (reduced[size_t(d)]) order.push_back(d), cols *= a.shape()[size_t(d)];
  }
  return a.permute(order).contiguous();
}

}  // namespace

Tensor reduce(RowReduce op, const Tensor& a, const std::vector<int64_t>& dims, bool keepdim, const char* name) {
  const int device = device_of(name, {{&a, "a"}});
  if (op == RowReduce::Mean) detail::check_floating(a, name, "a");
  const std::vector<bool> reduced = detail::reduced_dim_mask(dims, a.dim(), name);
  if (op == RowReduce::Max || op == RowReduce::Min) {
    for (size_t d = 0; d < reduced.size(); ++d) {
      check<ShapeError>(!reduced[d] || a.shape()[d] > 0, name, "cannot reduce over dim {} of size 0 (shape {})", d,
                        shape_str(a.shape()));
    }
  }
  int64_t rows = 0, cols = 0;
  Tensor in = reduced_dims_last(a, reduced, rows, cols);
  Tensor out = Tensor::empty(detail::reduced_shape(a.shape(), reduced, keepdim), a.dtype(), a.device());
  if (rows == 0) return out;
  DeviceGuard guard(device);
  kernels::reduce_rows(op, in.data_ptr(), out.data_ptr(), elem_type(a.dtype()), rows, cols, stream_of(device));
  check_launch(name);
  return out;
}

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  const char* op = "argmax";
  const int device = device_of(op, {{&a, "a"}});
  const int64_t d = detail::normalize_dim_or_scalar(dim, a.dim(), op);
  std::vector<bool> reduced(size_t(a.dim()), false);
  if (a.dim() > 0) reduced[size_t(d)] = true;
  check<ShapeError>(a.dim() == 0 || a.shape()[size_t(d)] > 0, op, "cannot take argmax over dim {} of size 0 (shape {})",
                    dim, shape_str(a.shape()));
  int64_t rows = 0, cols = 0;
  Tensor in = reduced_dims_last(a, reduced, rows, cols);
  Tensor out = Tensor::empty(detail::reduced_shape(a.shape(), reduced, keepdim), DType::I64, a.device());
  if (rows == 0) return out;
  DeviceGuard guard(device);
  kernels::argmax_rows(in.data_ptr(), static_cast<int64_t*>(out.data_ptr()), elem_type(a.dtype()), rows, cols,
                       stream_of(device));
  check_launch(op);
  return out;
}

Tensor softmax(const Tensor& a, int64_t dim, bool log, const char* name) {
  const int device = device_of(name, {{&a, "a"}});
  detail::check_floating(a, name, "a");
  const int64_t d = detail::normalize_dim_or_scalar(dim, a.dim(), name);
  if (a.numel() == 0) return Tensor::empty(a.shape(), a.dtype(), a.device());
  // The softmax dim moved last; rows are everything else.
  const int64_t last = std::max<int64_t>(a.dim() - 1, 0);
  Tensor moved = a.dim() == 0 ? a.reshape({1}) : a.transpose(d, last).contiguous();
  const int64_t cols = moved.shape().back();
  Tensor out = Tensor::empty(moved.shape(), a.dtype(), a.device());
  DeviceGuard guard(device);
  kernels::softmax_rows(moved.data_ptr(), out.data_ptr(), elem_type(a.dtype()), moved.numel() / cols, cols, log,
                        stream_of(device));
  check_launch(name);
  if (a.dim() == 0) return out.reshape({});
  return d == last ? out : out.transpose(d, last).contiguous();
}

}  // namespace dtensor::cuda
