// CUDA ops behind the model layers: row gathers (embedding, index_select), rms_norm /
// layer_norm, rotary embedding and top-k routing.
#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/cuda_ops.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/cuda/strided_walk.hpp"
#include "tensor/kernel_util.hpp"

namespace dtensor::cuda {

namespace {

void check_on(const Tensor& t, Device device, const char* op, const char* arg) {
  detail::check_defined(t, op, arg);
  check<DeviceError>(t.device() == device && device.type == DeviceType::CUDA, op,
                     "argument '{}' is on {}, expected a CUDA device{}", arg, t.device(),
                     device.type == DeviceType::CUDA ? fmt::format(" ({})", device) : std::string());
  check_device_exists(device, op);
}

void check_index_dtype(const Tensor& index, const char* op, const char* arg) {
  check<DTypeError>(index.dtype() == DType::I32 || index.dtype() == DType::I64, op,
                    "argument '{}' must have dtype i32 or i64, got {}", arg, index.dtype());
}

// rows of table [vocab, width] picked by ids (any shape, flattened), checked against [0, vocab).
// The range check needs the kernel's verdict on the host: one small copy back, which also
// waits for the gather.
Tensor gather_rows(const Tensor& table, const Tensor& ids, int64_t dim_for_errors, const char* op) {
  const int device = table.device().index;
  const int64_t vocab = table.shape()[0];
  const int64_t width = table.numel() / std::max<int64_t>(vocab, 1);
  Tensor flat_ids = ids.contiguous();
  Tensor out = Tensor::empty({ids.numel(), width}, table.dtype(), table.device());
  if (out.numel() == 0) return out;
  Tensor bad = Tensor::full({1}, 0.0, DType::I64, table.device());
  Tensor contiguous_table = table.contiguous();
  DeviceGuard guard(device);
  kernels::gather_rows(contiguous_table.data_ptr(), elem_type(table.dtype()), vocab, width, flat_ids.data_ptr(),
                       elem_type(ids.dtype()), ids.numel(), out.data_ptr(), static_cast<int64_t*>(bad.data_ptr()),
                       current_stream(device));
  check_launch(op);
  // 0 marks "no bad id"; a bad id of 0 is impossible unless vocab is 0, which the caller refused.
  const int64_t bad_id = bad.item<int64_t>();
  check<ValueError>(bad_id == 0, op, "index {} is out of range for dim {} of size {} (valid range [0, {}))", bad_id,
                    dim_for_errors, vocab, vocab);
  return out;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  const char* op = "embedding";
  check_on(weight, weight.device(), op, "weight");
  check_on(ids, weight.device(), op, "ids");
  check_index_dtype(ids, op, "ids");
  check<ShapeError>(weight.dim() == 2, op, "weight must be 2-D [vocab, dim], got shape {}", shape_str(weight.shape()));
  check<ValueError>(weight.shape()[0] > 0 || ids.numel() == 0, op, "weight has no rows to look up");
  Shape shape = ids.shape();
  shape.push_back(weight.shape()[1]);
  return gather_rows(weight, ids, 0, op).view(shape);
}

Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  check_on(a, a.device(), op, "a");
  check_on(index, a.device(), op, "index");
  check_index_dtype(index, op, "index");
  const int64_t d = normalize_dim(dim, a.dim(), op);
  check<ShapeError>(index.dim() <= 1, op, "index must be 0-d or 1-D, got shape {}", shape_str(index.shape()));
  check<ValueError>(a.shape()[size_t(d)] > 0 || index.numel() == 0, op, "dim {} of a has size 0", d);
  // dim moved first, the rest flattened into one row per index.
  Tensor moved = a.transpose(0, d).contiguous();
  Shape moved_shape = moved.shape();
  Tensor rows = gather_rows(moved.view({moved_shape[0], -1}), index.reshape({-1}), d, op);
  moved_shape[0] = index.numel();
  return rows.view(moved_shape).transpose(0, d).contiguous();
}

namespace {

// x's last dim and an optional [last dim] parameter (weight or bias) of x's dtype.
void check_norm_param(const Tensor& x, const Tensor& p, const char* op, const char* arg) {
  if (!p.defined()) return;
  check_on(p, x.device(), op, arg);
  detail::check_same_dtype(x, p, op, "x", arg);
  check<ShapeError>(p.dim() == 1 && p.shape()[0] == x.shape().back(), op, "{} must have shape [{}], got {}", arg,
                    x.shape().back(), shape_str(p.shape()));
}

const void* maybe_ptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  const char* op = "rms_norm";
  check_on(x, x.device(), op, "x");
  detail::check_floating(x, op, "x");
  check<ShapeError>(x.dim() >= 1, op, "x must have at least one dim, got a 0-d tensor");
  check_norm_param(x, weight, op, "weight");
  Tensor in = x.contiguous();
  Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t cols = x.shape().back();
  if (out.numel() == 0) return out;
  DeviceGuard guard(x.device().index);
  kernels::rms_norm_rows(in.data_ptr(), maybe_ptr(w), out.data_ptr(), elem_type(x.dtype()), x.numel() / cols, cols, eps,
                         current_stream(x.device().index));
  check_launch(op);
  return out;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "layer_norm";
  check_on(x, x.device(), op, "x");
  detail::check_floating(x, op, "x");
  check<ShapeError>(x.dim() >= 1, op, "x must have at least one dim, got a 0-d tensor");
  check_norm_param(x, weight, op, "weight");
  check_norm_param(x, bias, op, "bias");
  Tensor in = x.contiguous();
  Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t cols = x.shape().back();
  if (out.numel() == 0) return out;
  DeviceGuard guard(x.device().index);
  kernels::layer_norm_rows(in.data_ptr(), maybe_ptr(w), maybe_ptr(b), out.data_ptr(), elem_type(x.dtype()),
                           x.numel() / cols, cols, eps, current_stream(x.device().index));
  check_launch(op);
  return out;
}

Tensor rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const char* op = "rotary_embedding";
  check_on(x, x.device(), op, "x");
  check_on(cos, x.device(), op, "cos");
  check_on(sin, x.device(), op, "sin");
  detail::check_floating(x, op, "x");
  const DType table_dtype = x.dtype() == DType::F64 ? DType::F64 : DType::F32;  // x's compute type
  detail::check_dtype_is(cos, table_dtype, op, "cos");
  detail::check_dtype_is(sin, table_dtype, op, "sin");
  check<ShapeError>(x.dim() >= 2 && x.shape().back() % 2 == 0, op,
                    "x must be [..., heads, head_dim] with an even head_dim, got shape {}", shape_str(x.shape()));
  const int64_t head_dim = x.shape().back();
  const int64_t heads = x.shape()[size_t(x.dim() - 2)];
  const int64_t tokens = heads == 0 ? 0 : x.numel() / (heads * head_dim);
  const Shape table_shape{tokens, head_dim / 2};
  check<ShapeError>(cos.shape() == table_shape && sin.shape() == table_shape, op,
                    "cos and sin must have shape {} for x of shape {}, got {} and {}", shape_str(table_shape),
                    shape_str(x.shape()), shape_str(cos.shape()), shape_str(sin.shape()));
  Tensor in = x.contiguous();
  Tensor c = cos.contiguous();
  Tensor s = sin.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(x.device().index);
  kernels::rotary(in.data_ptr(), c.data_ptr(), s.data_ptr(), out.data_ptr(), elem_type(x.dtype()), tokens, heads,
                  head_dim, current_stream(x.device().index));
  check_launch(op);
  return out;
}

std::pair<Tensor, Tensor> topk(const Tensor& a, int64_t k) {
  const char* op = "topk";
  check_on(a, a.device(), op, "a");
  check<ShapeError>(a.dim() >= 1, op, "a must have at least one dim, got a 0-d tensor");
  const int64_t cols = a.shape().back();
  check<ValueError>(k >= 0 && k <= cols && k <= kernels::kMaxTopK, op,
                    "k is {}, expected 0 <= k <= min(last dim {}, {})", k, cols, kernels::kMaxTopK);
  Shape shape = a.shape();
  shape.back() = k;
  Tensor values = Tensor::empty(shape, a.dtype(), a.device());
  Tensor indices = Tensor::empty(shape, DType::I64, a.device());
  if (values.numel() == 0) return {values, indices};
  Tensor in = a.contiguous();
  DeviceGuard guard(a.device().index);
  kernels::topk_rows(in.data_ptr(), values.data_ptr(), static_cast<int64_t*>(indices.data_ptr()), elem_type(a.dtype()),
                     a.numel() / cols, cols, int(k), current_stream(a.device().index));
  check_launch(op);
  return {values, indices};
}

std::pair<Tensor, Tensor> topk(const Tensor& a, int64_t k, int64_t dim) {
  dim = normalize_dim(dim, a.dim(), "topk");
  if (dim == a.dim() - 1) return topk(a, k);
  auto [values, indices] = topk(a.transpose(dim, -1), k);
  return {values.transpose(dim, -1).contiguous(), indices.transpose(dim, -1).contiguous()};
}

}  // namespace dtensor::cuda
