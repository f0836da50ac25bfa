// layer_norm and rms_norm over the last dim (CPU kernels declared in ops.hpp).
//
// Each row of the last dim is normalised on its own: the row's statistics accumulate in double
// (as the reductions in reduce.cpp do), the per-element transform runs in the compute type (f32
// for f32, bf16 and f16; f64 for f64) and 16-bit results are rounded once on store. Rows are
// independent, so a block of rows gives bit-for-bit the rows of the whole tensor.
#include "tensor/device_kernels.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

#include <cmath>

namespace dtensor {
namespace {

// x must be floating with at least one dim; weight and bias (when defined) 1-D of x's last dim
// and x's dtype.
// Checked before a device tensor is handed over, so every backend refuses the same eps.
void check_eps(double eps, const char* op) {
  check(std::isfinite(eps) && eps >= 0, op, "eps must be a finite number >= 0, got {}", eps);
}

void check_norm_args(const Tensor& x, const Tensor& weight, const Tensor& bias, const char* op) {
  detail::check_cpu(x, op, "x");
  detail::check_floating(x, op, "x");
  // Not check() where the message formats shapes: its arguments are built even when it passes, and
  // a decoder runs two norms per layer per token.
  if (x.dim() < 1)
    fail<ShapeError>(op, "x needs at least one dim to normalise over, got shape {}", shape_str(x.shape()));
  const Shape expected = {x.shape().back()};
  for (const auto& [t, name] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    detail::check_cpu(*t, op, name);
    detail::check_same_dtype(x, *t, op, "x", name);
    if (t->shape() != expected) {
      fail<ShapeError>(op, "{} must have shape {} (x's last dim), got {}", name, shape_str(expected),
                       shape_str(t->shape()));
    }
  }
}

// The defined 1-D parameter widened to the compute type, or an empty vector.
template <typename T>
std::vector<compute_t<T>> widened(const Tensor& t) {
  std::vector<compute_t<T>> out;
  if (!t.defined()) return out;
  const Tensor c = t.contiguous();
  const T* p = detail::cdata<T>(c);
  out.reserve(size_t(c.numel()));
  for (int64_t i = 0; i < c.numel(); ++i) out.push_back(compute_t<T>(p[i]));
  return out;
}

// Runs row(in, out, n) over every row of the last dim: in is the row widened to the compute
// type, out receives the compute-type results.
template <typename T, typename Row>
Tensor for_each_row(const Tensor& x, Row row) {
  using C = compute_t<T>;
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = x.shape().back();
  if (out.numel() == 0) return out;
  const T* pi = detail::cdata<T>(in);
  T* po = detail::mdata<T>(out);
  std::vector<C> line(static_cast<size_t>(n)), result(static_cast<size_t>(n));
  for (int64_t r = 0; r < in.numel() / n; ++r) {
    for (int64_t i = 0; i < n; ++i) line[size_t(i)] = C(pi[r * n + i]);
    row(line, result);
    for (int64_t i = 0; i < n; ++i) po[r * n + i] = T(result[size_t(i)]);
  }
  return out;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_eps(eps, "layer_norm");
  if (on_device(x)) return device_kernels(x, "layer_norm").layer_norm(x, weight, bias, eps);
  const char* op = "layer_norm";
  check_norm_args(x, weight, bias, op);
  return visit_dtype(x.dtype(), [&]<typename T>() -> Tensor {
    using C = compute_t<T>;
    if constexpr (std::is_floating_point_v<C>) {
      const std::vector<C> w = widened<T>(weight), b = widened<T>(bias);
      return for_each_row<T>(x, [&](const std::vector<C>& in, std::vector<C>& out) {
        const size_t n = in.size();
        double total = 0;
        for (C v : in) total += double(v);
        const double mean = total / double(n);
        double squares = 0;  // two passes: no cancellation when |mean| >> std
        for (C v : in) squares += (double(v) - mean) * (double(v) - mean);
        const C rstd = C(1) / std::sqrt(C(squares / double(n)) + C(eps));  // biased variance, as torch
        for (size_t i = 0; i < n; ++i) {
          C y = (in[i] - C(mean)) * rstd;
          if (!w.empty()) y *= w[i];
          if (!b.empty()) y += b[i];
          out[i] = y;
        }
      });
    } else {
      fail<DTypeError>(op, "unreachable integer dtype {}", x.dtype());
    }
  });
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_eps(eps, "rms_norm");
  if (on_device(x)) return device_kernels(x, "rms_norm").rms_norm(x, weight, eps);
  const char* op = "rms_norm";
  check_norm_args(x, weight, Tensor(), op);
  return visit_dtype(x.dtype(), [&]<typename T>() -> Tensor {
    using C = compute_t<T>;
    if constexpr (std::is_floating_point_v<C>) {
      const std::vector<C> w = widened<T>(weight);
      return for_each_row<T>(x, [&](const std::vector<C>& in, std::vector<C>& out) {
        const size_t n = in.size();
        double squares = 0;
        for (C v : in) squares += double(v) * double(v);
        const C rstd = C(1) / std::sqrt(C(squares / double(n)) + C(eps));
        for (size_t i = 0; i < n; ++i) out[i] = w.empty() ? in[i] * rstd : in[i] * rstd * w[i];
      });
    } else {
      fail<DTypeError>(op, "unreachable integer dtype {}", x.dtype());
    }
  });
}

}  // namespace dtensor
