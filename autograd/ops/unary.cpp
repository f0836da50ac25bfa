// Unary math with its backwards. Formulas in more than one step (silu, gelu, tanh) run in f32
// for 16-bit inputs and round once, as the forward kernels do.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

#include <cmath>
#include <numbers>

namespace dtensor::autograd {

using detail::scalar_like;
using detail::to_compute;

namespace {
// grad * factor, computed in f32 for 16-bit dtypes and rounded once to grad's dtype.
Tensor scaled(const Tensor& grad, const Tensor& factor) {
  return dtensor::mul(to_compute(grad), to_compute(factor)).to(grad.dtype());
}

// grad * s (1 + x (1 - s)) with s = 1 / (1 + e^-x), in one vectorised pass over contiguous CPU
// f32 / f64 data: the formula silu's backward computes with ops for other dtypes, layouts and
// devices, without their eight temporaries (a Llama MLP's largest activations; make bench-train).
bool silu_backward_fusable(const Tensor& grad, const Tensor& x) {
  const bool native = x.dtype() == DType::F32 || x.dtype() == DType::F64;
  return native && grad.dtype() == x.dtype() && grad.shape() == x.shape() && x.device().is_cpu() &&
         grad.device().is_cpu() && x.is_contiguous() && grad.is_contiguous();
}

template <typename T>
Tensor silu_backward_fused(const Tensor& grad, const Tensor& x) {
  constexpr int64_t kBlock = 1024;  // the sigmoid of one block, kept on the stack
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = x.numel();
  const T* g = grad.data<T>();
  const T* in = x.data<T>();
  T* o = out.data<T>();
  T sigmoid_block[kBlock];
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t m = std::min(kBlock, n - start);
    dtensor::detail::ConstArrayMap<T> xs(in + start, m);
    dtensor::detail::ArrayMap<T> s(sigmoid_block, m);
    s = T(1) / (T(1) + (-xs).exp());
    dtensor::detail::ArrayMap<T>(o + start, m) =
        dtensor::detail::ConstArrayMap<T>(g + start, m) * (s * (T(1) + xs * (T(1) - s)));
  }
  return out;
}

// 1 / (1 + e^-x)
Tensor sigmoid(const Tensor& x) {
  return dtensor::div(scalar_like(x, 1.0), dtensor::add(dtensor::exp(dtensor::neg(x)), 1.0));
}

// d gelu(x) / dx = Phi(x) + x phi(x) for the exact (erf) gelu. No kernel computes erf, so this
// runs on the host in f64 and returns to x's device and dtype.
Tensor gelu_derivative(const Tensor& x) {
  Tensor host = x.to(Device::cpu()).to(DType::F64).contiguous();
  Tensor derivative = Tensor::empty(host.shape(), DType::F64);
  const double* in = host.data<double>();
  double* out = derivative.data<double>();
  for (int64_t i = 0; i < host.numel(); ++i) {
    double cdf = 0.5 * (1.0 + std::erf(in[i] / std::numbers::sqrt2));
    double pdf = std::exp(-0.5 * in[i] * in[i]) / std::sqrt(2.0 * std::numbers::pi);
    out[i] = cdf + in[i] * pdf;
  }
  return derivative.to(detail::compute_dtype(x.dtype())).to(x.device());
}
}  // namespace

Tensor neg(const Tensor& a) {
  Tensor out = dtensor::neg(a);
  if (!should_record(a)) return out;
  return record("neg", {a}, {}, out, [](const FunctionNode&, const Tensor& grad) { return Grads{dtensor::neg(grad)}; });
}

// d|a| = sign(a) da, with sign(0) = 0
Tensor abs(const Tensor& a) {
  Tensor out = dtensor::abs(a);
  if (!should_record(a)) return out;
  return record("abs", {a}, {a}, out, [](const FunctionNode& node, const Tensor& grad) {
    const Tensor& a = node.saved(0);
    Tensor zero = scalar_like(a, 0.0);
    Tensor sign = dtensor::where(dtensor::gt(a, zero), scalar_like(a, 1.0),
                                 dtensor::where(dtensor::lt(a, zero), scalar_like(a, -1.0), zero));
    return Grads{dtensor::mul(grad, sign)};
  });
}

// d e^a = e^a da
Tensor exp(const Tensor& a) {
  Tensor out = dtensor::exp(a);
  if (!should_record(a)) return out;
  return record("exp", {a}, {out}, out,
                [](const FunctionNode& node, const Tensor& grad) { return Grads{dtensor::mul(grad, node.saved(0))}; });
}

// d log a = da / a
Tensor log(const Tensor& a) {
  Tensor out = dtensor::log(a);
  if (!should_record(a)) return out;
  return record("log", {a}, {a}, out,
                [](const FunctionNode& node, const Tensor& grad) { return Grads{dtensor::div(grad, node.saved(0))}; });
}

// d sqrt(a) = da / (2 sqrt(a))
Tensor sqrt(const Tensor& a) {
  Tensor out = dtensor::sqrt(a);
  if (!should_record(a)) return out;
  return record("sqrt", {a}, {out}, out, [](const FunctionNode& node, const Tensor& grad) {
    return Grads{dtensor::div(dtensor::mul(grad, 0.5), node.saved(0))};
  });
}

// d a^(-1/2) = -1/2 a^(-3/2) da = -1/2 out^3 da
Tensor rsqrt(const Tensor& a) {
  Tensor out = dtensor::rsqrt(a);
  if (!should_record(a)) return out;
  return record("rsqrt", {a}, {out}, out, [](const FunctionNode& node, const Tensor& grad) {
    Tensor r = to_compute(node.saved(0));
    return Grads{scaled(grad, dtensor::mul(dtensor::mul(dtensor::mul(r, r), r), -0.5))};
  });
}

// d tanh(a) = (1 - tanh(a)^2) da
Tensor tanh(const Tensor& a) {
  Tensor out = dtensor::tanh(a);
  if (!should_record(a)) return out;
  return record("tanh", {a}, {out}, out, [](const FunctionNode& node, const Tensor& grad) {
    Tensor t = to_compute(node.saved(0));
    return Grads{scaled(grad, dtensor::sub(scalar_like(t, 1.0), dtensor::mul(t, t)))};
  });
}

Tensor relu(const Tensor& a) {
  Tensor out = dtensor::relu(a);
  if (!should_record(a)) return out;
  return record("relu", {a}, {a}, out, [](const FunctionNode& node, const Tensor& grad) {
    Tensor positive = dtensor::gt(node.saved(0), scalar_like(node.saved(0), 0.0));
    return Grads{dtensor::where(positive, grad, scalar_like(grad, 0.0))};
  });
}

// d (a s(a)) = s(a) (1 + a (1 - s(a))) da, s the logistic sigmoid
Tensor silu(const Tensor& a) {
  Tensor out = dtensor::silu(a);
  if (!should_record(a)) return out;
  return record("silu", {a}, {a}, out, [](const FunctionNode& node, const Tensor& grad) {
    if (silu_backward_fusable(grad, node.saved(0))) {
      return Grads{grad.dtype() == DType::F32 ? silu_backward_fused<float>(grad, node.saved(0))
                                              : silu_backward_fused<double>(grad, node.saved(0))};
    }
    Tensor x = to_compute(node.saved(0));
    Tensor s = sigmoid(x);
    Tensor one = scalar_like(x, 1.0);
    return Grads{scaled(grad, dtensor::mul(s, dtensor::add(one, dtensor::mul(x, dtensor::sub(one, s)))))};
  });
}

Tensor gelu(const Tensor& a) {
  Tensor out = dtensor::gelu(a);
  if (!should_record(a)) return out;
  return record("gelu", {a}, {a}, out, [](const FunctionNode& node, const Tensor& grad) {
    return Grads{scaled(grad, gelu_derivative(node.saved(0)))};
  });
}

}  // namespace dtensor::autograd
