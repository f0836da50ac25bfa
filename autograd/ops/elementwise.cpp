// Elementwise binary ops, where, masked_fill and the copies (cast, to_device, clone), with their backwards.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor::autograd {

using detail::scalar_like;
using detail::sum_to_shape;

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::add(a, b);
  if (!should_record(a, b)) return out;
  return record("add", {a, b}, {}, out, [sa = a.shape(), sb = b.shape()](const FunctionNode&, const Tensor& grad) {
    return Grads{sum_to_shape(grad, sa), sum_to_shape(grad, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::sub(a, b);
  if (!should_record(a, b)) return out;
  return record("sub", {a, b}, {}, out, [sa = a.shape(), sb = b.shape()](const FunctionNode& node, const Tensor& grad) {
    return Grads{sum_to_shape(grad, sa), node.needs_grad(1) ? sum_to_shape(dtensor::neg(grad), sb) : Tensor()};
  });
}

// d(a b) = b da + a db
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::mul(a, b);
  if (!should_record(a, b)) return out;
  return record("mul", {a, b}, {a, b}, out,
                [sa = a.shape(), sb = b.shape()](const FunctionNode& node, const Tensor& grad) {
                  const Tensor& a = node.saved(0);
                  const Tensor& b = node.saved(1);
                  return Grads{node.needs_grad(0) ? sum_to_shape(dtensor::mul(grad, b), sa) : Tensor(),
                               node.needs_grad(1) ? sum_to_shape(dtensor::mul(grad, a), sb) : Tensor()};
                });
}

// d(a / b) = da / b - (a / b) db / b
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::div(a, b);
  if (!should_record(a, b)) return out;
  return record(
      "div", {a, b}, {b, out}, out, [sa = a.shape(), sb = b.shape()](const FunctionNode& node, const Tensor& grad) {
        const Tensor& b = node.saved(0);
        const Tensor& quotient = node.saved(1);
        Tensor grad_over_b = dtensor::div(grad, b);
        return Grads{
            node.needs_grad(0) ? sum_to_shape(grad_over_b, sa) : Tensor(),
            node.needs_grad(1) ? sum_to_shape(dtensor::neg(dtensor::mul(grad_over_b, quotient)), sb) : Tensor()};
      });
}

namespace {
// The share of the gradient the winner `a` of maximum / minimum receives: 1 where it wins, 1/2
// where it ties, 0 where it loses (torch's rule).
Tensor winner_share(const Tensor& a_wins, const Tensor& tie, const Tensor& like) {
  return dtensor::where(a_wins, scalar_like(like, 1.0),
                        dtensor::where(tie, scalar_like(like, 0.5), scalar_like(like, 0.0)));
}

Tensor record_extremum(const char* name, const Tensor& a, const Tensor& b, Tensor out, bool is_max) {
  return record(
      name, {a, b}, {a, b}, std::move(out),
      [sa = a.shape(), sb = b.shape(), is_max](const FunctionNode& node, const Tensor& grad) {
        const Tensor& a = node.saved(0);
        const Tensor& b = node.saved(1);
        Tensor tie = dtensor::eq(a, b);
        Tensor a_share = winner_share(is_max ? dtensor::gt(a, b) : dtensor::lt(a, b), tie, grad);
        Tensor b_share = winner_share(is_max ? dtensor::lt(a, b) : dtensor::gt(a, b), tie, grad);
        return Grads{sum_to_shape(dtensor::mul(grad, a_share), sa), sum_to_shape(dtensor::mul(grad, b_share), sb)};
      });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::maximum(a, b);
  return should_record(a, b) ? record_extremum("maximum", a, b, out, /*is_max=*/true) : out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::minimum(a, b);
  return should_record(a, b) ? record_extremum("minimum", a, b, out, /*is_max=*/false) : out;
}

Tensor add(const Tensor& a, double s) {
  Tensor out = dtensor::add(a, s);
  if (!should_record(a)) return out;
  return record("add_scalar", {a}, {}, out, [](const FunctionNode&, const Tensor& grad) { return Grads{grad}; });
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = dtensor::mul(a, s);
  if (!should_record(a)) return out;
  return record("mul_scalar", {a}, {}, out,
                [s](const FunctionNode&, const Tensor& grad) { return Grads{dtensor::mul(grad, s)}; });
}

// The gradient goes to whichever input each element came from.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::where(cond, a, b);
  if (!should_record(a, b)) return out;
  return record("where", {a, b}, {cond}, out,
                [sa = a.shape(), sb = b.shape()](const FunctionNode& node, const Tensor& grad) {
                  const Tensor& cond = node.saved(0);
                  Tensor zero = scalar_like(grad, 0.0);
                  return Grads{node.needs_grad(0) ? sum_to_shape(dtensor::where(cond, grad, zero), sa) : Tensor(),
                               node.needs_grad(1) ? sum_to_shape(dtensor::where(cond, zero, grad), sb) : Tensor()};
                });
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  Tensor out = dtensor::masked_fill(a, mask, value);
  if (!should_record(a)) return out;
  return record("masked_fill", {a}, {mask}, out, [](const FunctionNode& node, const Tensor& grad) {
    return Grads{dtensor::masked_fill(grad, node.saved(0), 0.0)};
  });
}

Tensor cast(const Tensor& a, DType dtype) {
  if (dtype == a.dtype()) return a;
  Tensor out = a.to(dtype);
  if (!should_record(a) || !is_floating(dtype)) return out;  // integers carry no gradient
  return record("cast", {a}, {}, out,
                [from = a.dtype()](const FunctionNode&, const Tensor& grad) { return Grads{grad.to(from)}; });
}

Tensor to_device(const Tensor& a, Device device) {
  if (device == a.device()) return a;
  Tensor out = a.to(device);
  if (!should_record(a)) return out;
  return record("to_device", {a}, {}, out,
                [from = a.device()](const FunctionNode&, const Tensor& grad) { return Grads{grad.to(from)}; });
}

Tensor clone(const Tensor& a) {
  Tensor out = a.clone();
  if (!should_record(a)) return out;
  return record("clone", {a}, {}, out, [](const FunctionNode&, const Tensor& grad) { return Grads{grad}; });
}

}  // namespace dtensor::autograd
