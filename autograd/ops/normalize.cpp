// Softmax and the normalisations over the last dim with their backwards, in f32 for 16-bit
// inputs (as the forwards), rounded once to each input's dtype.
//
// With n = (x - mean) r the normalised rows (rms_norm: mean 0), r = 1 / sqrt(var + eps) and
// g = dout * weight, llm.c's layernorm_backward gives
//   dx = r (g - mean(g) - n mean(g n)),   dweight = sum over rows of dout n,   dbias = sum of dout,
// and rms_norm drops the mean(g) term.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "tensor/ops.hpp"

#include <cmath>
#include <vector>

namespace dtensor::autograd {

using detail::to_compute;

namespace {
// dout summed over every dim but the last: the gradient of a weight or bias applied to each row.
Tensor sum_rows(const Tensor& t, DType dtype) { return dtensor::sum(t.reshape({-1, t.size(-1)}), {0}).to(dtype); }

struct NormalizedRows {
  Tensor normalized;  // n
  Tensor rstd;        // r, [..., 1]
};

NormalizedRows normalize_rows(const Tensor& x, double eps, bool subtract_mean) {
  Tensor centred = subtract_mean ? dtensor::sub(x, dtensor::mean(x, {-1}, true)) : x;
  Tensor variance = dtensor::mean(dtensor::mul(centred, centred), {-1}, true);
  Tensor rstd = dtensor::rsqrt(dtensor::add(variance, eps));
  return {dtensor::mul(centred, rstd), rstd};
}

struct NormOptions {
  double eps;
  bool subtract_mean;  // layer_norm; rms_norm does not
  bool has_bias;
  DType bias_dtype;
};

// rms_norm's backward in one pass per row over contiguous CPU f32 / f64 data (the formulas above
// with n = x r and g = dout w; the weight's gradient summed in f64), instead of the ten temporaries
// of the op form below, which serves other dtypes, layouts and devices (make bench-train).
bool rms_backward_fusable(const Tensor& x, const Tensor& weight, const Tensor& grad) {
  const bool native = x.dtype() == DType::F32 || x.dtype() == DType::F64;
  const bool weight_ok = !weight.defined() || (weight.dtype() == x.dtype() && weight.is_contiguous() &&
                                               weight.device().is_cpu() && weight.dim() == 1);
  return native && weight_ok && grad.dtype() == x.dtype() && grad.shape() == x.shape() && x.device().is_cpu() &&
         grad.device().is_cpu() && x.is_contiguous() && grad.is_contiguous() && x.dim() >= 1 && x.numel() > 0;
}

template <typename T>
Grads rms_norm_backward_fused(const FunctionNode& node, const Tensor& grad, double eps) {
  const Tensor& x = node.saved(0);
  const Tensor& weight = node.saved(1);
  const int64_t width = x.size(-1), rows = x.numel() / width;
  const bool weight_grad = weight.defined() && node.needs_grad(1);
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  std::vector<double> dw(weight_grad ? size_t(width) : 0, 0.0);
  const T* w = weight.defined() ? weight.data<T>() : nullptr;
  for (int64_t i = 0; i < rows; ++i) {
    const T* xr = x.data<T>() + i * width;
    const T* gr = grad.data<T>() + i * width;
    T* out = dx.data<T>() + i * width;
    double squares = 0, dot = 0;
    for (int64_t j = 0; j < width; ++j) squares += double(xr[j]) * xr[j];
    const double r = 1.0 / std::sqrt(squares / double(width) + eps);
    for (int64_t j = 0; j < width; ++j) dot += double(gr[j]) * (w ? w[j] : 1.0) * xr[j] * r;
    dot /= double(width);
    for (int64_t j = 0; j < width; ++j) {
      const double n = double(xr[j]) * r;
      out[j] = T(r * (double(gr[j]) * (w ? w[j] : 1.0) - n * dot));
      if (weight_grad) dw[size_t(j)] += double(gr[j]) * n;
    }
  }
  Grads grads{dx};
  if (weight.defined()) {
    Tensor dweight;
    if (weight_grad) {
      dweight = Tensor::empty({width}, weight.dtype());
      for (int64_t j = 0; j < width; ++j) dweight.data<T>()[j] = T(dw[size_t(j)]);
    }
    grads.push_back(dweight);
  }
  return grads;
}

Grads norm_backward(const FunctionNode& node, const Tensor& grad, const NormOptions& options) {
  if (!options.subtract_mean && rms_backward_fusable(node.saved(0), node.saved(1), grad)) {
    return grad.dtype() == DType::F32 ? rms_norm_backward_fused<float>(node, grad, options.eps)
                                      : rms_norm_backward_fused<double>(node, grad, options.eps);
  }
  Tensor x = to_compute(node.saved(0));
  const Tensor& weight = node.saved(1);
  Tensor dout = to_compute(grad);
  auto [n, rstd] = normalize_rows(x, options.eps, options.subtract_mean);
  Tensor g = weight.defined() ? dtensor::mul(dout, to_compute(weight)) : dout;
  Tensor dx = dtensor::sub(g, dtensor::mul(n, dtensor::mean(dtensor::mul(g, n), {-1}, true)));
  if (options.subtract_mean) dx = dtensor::sub(dx, dtensor::mean(g, {-1}, true));
  Grads grads{dtensor::mul(dx, rstd).to(grad.dtype())};
  if (weight.defined())
    grads.push_back(node.needs_grad(1) ? sum_rows(dtensor::mul(dout, n), weight.dtype()) : Tensor());
  if (options.has_bias) grads.push_back(sum_rows(dout, options.bias_dtype));
  return grads;
}

// The inputs of a norm that get gradients, in the order of its backward's results.
std::vector<Tensor> present(std::initializer_list<Tensor> tensors) {
  std::vector<Tensor> inputs;
  for (const Tensor& t : tensors) {
    if (t.defined()) inputs.push_back(t);
  }
  return inputs;
}
}  // namespace

// dx = y (dout - sum(dout y))
Tensor softmax(const Tensor& a, int64_t dim) {
  Tensor out = dtensor::softmax(a, dim);
  if (!should_record(a)) return out;
  return record("softmax", {a}, {out}, out, [dim](const FunctionNode& node, const Tensor& grad) {
    Tensor y = to_compute(node.saved(0));
    Tensor dout = to_compute(grad);
    Tensor dot = dtensor::sum(dtensor::mul(dout, y), {dim}, true);
    return Grads{dtensor::mul(y, dtensor::sub(dout, dot)).to(grad.dtype())};
  });
}

// dx = dout - softmax(a) sum(dout), with softmax(a) = e^out
Tensor log_softmax(const Tensor& a, int64_t dim) {
  Tensor out = dtensor::log_softmax(a, dim);
  if (!should_record(a)) return out;
  return record("log_softmax", {a}, {out}, out, [dim](const FunctionNode& node, const Tensor& grad) {
    Tensor probabilities = dtensor::exp(to_compute(node.saved(0)));
    Tensor dout = to_compute(grad);
    Tensor total = dtensor::sum(dout, {dim}, true);
    return Grads{dtensor::sub(dout, dtensor::mul(probabilities, total)).to(grad.dtype())};
  });
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  Tensor out = dtensor::layer_norm(x, weight, bias, eps);
  if (!should_record(x, weight, bias)) return out;
  // Inputs: x, then weight and bias where given; the backward returns gradients in that order.
  return record("layer_norm", present({x, weight, bias}), {x, weight}, out,
                [options = NormOptions{eps, true, bias.defined(), bias.defined() ? bias.dtype() : x.dtype()}](
                    const FunctionNode& node, const Tensor& grad) { return norm_backward(node, grad, options); });
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  Tensor out = dtensor::rms_norm(x, weight, eps);
  if (!should_record(x, weight)) return out;
  return record("rms_norm", present({x, weight}), {x, weight}, out,
                [options = NormOptions{eps, false, false, x.dtype()}](const FunctionNode& node, const Tensor& grad) {
                  return norm_backward(node, grad, options);
                });
}

}  // namespace dtensor::autograd
