// Unary math: neg, abs, exp, log, sqrt, rsqrt, tanh, relu, silu, gelu.
//
// Each op is an Eigen array expression, so float and double get Eigen's vectorised exp/log/tanh/
// erf. 16-bit floats are widened block by block into a float buffer, transformed there and
// rounded on store, which keeps them on the same vector code.
#include "tensor/device_kernels.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

#include <unsupported/Eigen/SpecialFunctions>

namespace dtensor {
namespace {

using detail::ArrayMap;
using detail::ConstArrayMap;

constexpr int64_t kBlock = 256;  // elements widened at a time: small enough to stay on the stack

// Applies fn to one run of n elements (strides in elements; the output run is contiguous or not).
template <typename T, typename Fn>
void map_run(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t n, Fn& fn) {
  using C = compute_t<T>;
  if constexpr (detail::is_native_v<T>) {
    if (src_stride == 1 && dst_stride == 1) {
      ArrayMap<C>(dst, n) = fn(ConstArrayMap<C>(src, n));
      return;
    }
  }
  C buffer[kBlock];
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t m = std::min(kBlock, n - start);
    for (int64_t i = 0; i < m; ++i) buffer[i] = C(src[(start + i) * src_stride]);
    ArrayMap<C> block(buffer, m);
    block = fn(block);  // coefficient-wise, so evaluating in place is safe
    for (int64_t i = 0; i < m; ++i) dst[(start + i) * dst_stride] = T(buffer[i]);
  }
}

// out = fn(a) elementwise, out a new contiguous tensor of a's dtype.
template <typename T, typename Fn>
Tensor map_elements(const Tensor& a, Fn fn) {
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  const T* src = detail::cdata<T>(a);
  T* dst = detail::mdata<T>(out);
  detail::StridedLoop<2> loop(a.shape(), {out.strides(), a.strides()});
  loop.tile_transposed().for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
    map_run<T>(src + offsets[1], strides[1], dst + offsets[0], strides[0], n, fn);
  });
  return out;
}

// Marks an op that has no integer form.
struct FloatingOnly {};

// Dispatches on a's dtype: float_fn for floating dtypes, int_fn for integer ones (or DTypeError
// when the op is FloatingOnly). Both are generic lambdas over an Eigen array expression.
template <typename FloatFn, typename IntFn = FloatingOnly>
Tensor unary_op(const Tensor& a, const char* op, FloatFn float_fn, IntFn int_fn = {}) {
  detail::check_cpu(a, op, "a");
  constexpr bool has_int_form = !std::is_same_v<IntFn, FloatingOnly>;
  if (!has_int_form) detail::check_floating(a, op, "a");
  return visit_dtype(a.dtype(), [&]<typename T>() -> Tensor {
    if constexpr (std::is_floating_point_v<compute_t<T>>) {
      return map_elements<T>(a, float_fn);
    } else if constexpr (has_int_form) {
      return map_elements<T>(a, int_fn);
    } else {
      fail<DTypeError>(op, "unreachable integer dtype {}", a.dtype());
    }
  });
}

// The scalar type of an Eigen expression, for typed constants inside the generic lambdas.
template <typename X>
using scalar_of = typename std::decay_t<X>::Scalar;

// Integer forms go through unaryExpr so negation wraps instead of overflowing (INT_MIN).
auto integer_neg = [](const auto& x) {
  using C = scalar_of<decltype(x)>;
  return x.unaryExpr([](C v) { return detail::wrapping_sub(C(0), v); });
};
auto integer_abs = [](const auto& x) {
  using C = scalar_of<decltype(x)>;
  return x.unaryExpr([](C v) {
    if constexpr (std::is_signed_v<C>) return v < C(0) ? detail::wrapping_sub(C(0), v) : v;
    return v;
  });
};

}  // namespace

Tensor neg(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "neg").unary(UnaryOp::Neg, a, "neg");
  return unary_op(
      a, "neg", [](const auto& x) { return -x; }, integer_neg);
}

Tensor abs(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "abs").unary(UnaryOp::Abs, a, "abs");
  return unary_op(
      a, "abs", [](const auto& x) { return x.abs(); }, integer_abs);
}

Tensor exp(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "exp").unary(UnaryOp::Exp, a, "exp");
  return unary_op(a, "exp", [](const auto& x) { return x.exp(); });
}

Tensor log(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "log").unary(UnaryOp::Log, a, "log");
  return unary_op(a, "log", [](const auto& x) { return x.log(); });
}

Tensor sqrt(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "sqrt").unary(UnaryOp::Sqrt, a, "sqrt");
  return unary_op(a, "sqrt", [](const auto& x) { return x.sqrt(); });
}

Tensor rsqrt(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "rsqrt").unary(UnaryOp::Rsqrt, a, "rsqrt");
  return unary_op(a, "rsqrt", [](const auto& x) { return x.rsqrt(); });
}

Tensor tanh(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "tanh").unary(UnaryOp::Tanh, a, "tanh");
  return unary_op(a, "tanh", [](const auto& x) { return x.tanh(); });
}

Tensor relu(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "relu").unary(UnaryOp::Relu, a, "relu");
  // (x < 0) ? 0 : x keeps NaN as NaN, as torch.relu does.
  auto relu_fn = [](const auto& x) {
    using C = scalar_of<decltype(x)>;
    return (x < C(0)).select(C(0), x);
  };
  return unary_op(a, "relu", relu_fn, relu_fn);
}

Tensor silu(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "silu").unary(UnaryOp::Silu, a, "silu");
  // x * sigmoid(x) written as x / (1 + e^-x): for very negative x the denominator is inf and
  // the result a correctly signed zero instead of inf * 0 = NaN.
  return unary_op(a, "silu", [](const auto& x) {
    using C = scalar_of<decltype(x)>;
    return x / (C(1) + (-x).exp());
  });
}

Tensor gelu(const Tensor& a) {
  if (on_device(a)) return device_kernels(a, "gelu").unary(UnaryOp::Gelu, a, "gelu");
  return unary_op(a, "gelu", [](const auto& x) {
    using C = scalar_of<decltype(x)>;
    return C(0.5) * x * (C(1) + (x * C(M_SQRT1_2)).erf());
  });
}

}  // namespace dtensor
