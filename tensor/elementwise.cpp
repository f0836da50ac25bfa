// Elementwise binary ops with broadcasting, their scalar forms, comparisons, where, masked_fill.
//
// One driver (binary_op) walks the broadcast shape with StridedLoop; each op is a small struct
// with a scalar form (apply) and an Eigen array form (array) that the contiguous runs use.
#include "tensor/device_kernels.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor {
namespace {

using detail::ArrayMap;
using detail::ConstArrayMap;
using detail::StridedLoop;
using detail::Vector;

template <typename C>
bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>) return std::isnan(v);
  return false;
}

// Arithmetic ops: the result has the inputs' dtype. Integer add/sub/mul wrap (as in torch).
struct AddOp {
  template <typename C>
  static C apply(C a, C b) {
    return detail::wrapping_add(a, b);
  }
  template <typename A, typename B>
  static auto array(const A& a, const B& b) {
    return a + b;
  }
};
struct SubOp {
  template <typename C>
  static C apply(C a, C b) {
    return detail::wrapping_sub(a, b);
  }
  template <typename A, typename B>
  static auto array(const A& a, const B& b) {
    return a - b;
  }
};
struct MulOp {
  template <typename C>
  static C apply(C a, C b) {
    return detail::wrapping_mul(a, b);
  }
  template <typename A, typename B>
  static auto array(const A& a, const B& b) {
    return a * b;
  }
};
// Integer division truncates toward zero (C++ and torch's rounding_mode="trunc"); dividing by
// zero is a ValueError rather than a SIGFPE, and MIN / -1 wraps instead of trapping.
struct DivOp {
  template <typename C>
  static C apply(C a, C b) {
    if constexpr (std::is_integral_v<C>) {
      if (b == C(0)) fail<ValueError>("div", "integer division by zero (dividend {})", +a);
      if (std::is_signed_v<C> && b == C(-1)) return detail::wrapping_sub(C(0), a);
    }
    return C(a / b);
  }
  template <typename A, typename B>
  static auto array(const A& a, const B& b) {
    return a / b;
  }
};
// maximum/minimum propagate NaN, like torch.maximum.
struct MaxOp {
  template <typename C>
  static C apply(C a, C b) {
    if (is_nan(a)) return a;
    return (is_nan(b) || a < b) ? b : a;
  }
  template <typename A, typename B>
  static auto array(const A& a, const B& b) {
    using C = typename A::Scalar;
    return a.binaryExpr(b, Eigen::internal::scalar_max_op<C, C, Eigen::PropagateNaN>());
  }
};
struct MinOp {
  template <typename C>
  static C apply(C a, C b) {
    if (is_nan(a)) return a;
    return (is_nan(b) || b < a) ? b : a;
  }
  template <typename A, typename B>
  static auto array(const A& a, const B& b) {
    using C = typename A::Scalar;
    return a.binaryExpr(b, Eigen::internal::scalar_min_op<C, C, Eigen::PropagateNaN>());
  }
};

// Comparisons produce u8 0/1; a comparison with NaN is false (true for ne), as IEEE says.
#define DTENSOR_COMPARE_OP(Name, expr_op)            \
  struct Name {                                      \
    template <typename C>                            \
    static uint8_t apply(C a, C b) {                 \
      return uint8_t(a expr_op b);                   \
    }                                                \
    template <typename A, typename B>                \
    static auto array(const A& a, const B& b) {      \
      return (a expr_op b).template cast<uint8_t>(); \
    }                                                \
  };
DTENSOR_COMPARE_OP(EqOp, ==)
DTENSOR_COMPARE_OP(NeOp, !=)
DTENSOR_COMPARE_OP(LtOp, <)
DTENSOR_COMPARE_OP(LeOp, <=)
DTENSOR_COMPARE_OP(GtOp, >)
DTENSOR_COMPARE_OP(GeOp, >=)
#undef DTENSOR_COMPARE_OP

template <typename Op, typename C>
using result_of_op = decltype(Op::apply(C(), C()));

// One run of n elements: out[i] = op(a[i], b[i]) with per-operand strides (out, a, b).
// float/double runs that are contiguous, or contiguous against a broadcast scalar (bias add's
// inner dim), go through Eigen's vectorised expressions; everything else is a scalar loop.
template <typename T, typename Op>
void binary_run(const T* a, const T* b, result_of_op<Op, compute_t<T>>* out, int64_t n,
                const std::array<int64_t, 3>& s) {
  using C = compute_t<T>;
  using O = result_of_op<Op, C>;
  if constexpr (std::is_floating_point_v<T>) {
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
      ArrayMap<O>(out, n) = Op::array(ConstArrayMap<T>(a, n), ConstArrayMap<T>(b, n));
      return;
    }
    if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
      ArrayMap<O>(out, n) = Op::array(ConstArrayMap<T>(a, n), Vector<T>::Constant(n, *b));
      return;
    }
    if (s[0] == 1 && s[1] == 0 && s[2] == 1) {
      ArrayMap<O>(out, n) = Op::array(Vector<T>::Constant(n, *a), ConstArrayMap<T>(b, n));
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) out[i * s[0]] = O(Op::apply(C(a[i * s[1]]), C(b[i * s[2]])));
}

template <typename Op>
Tensor binary_op(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_cpu(a, op, "a");
  detail::check_cpu(b, op, "b");
  detail::check_same_dtype(a, b, op, "a", "b");
  const Shape shape = detail::broadcast_shapes(a.shape(), b.shape(), op);
  return visit_dtype(a.dtype(), [&]<typename T>() {
    using O = result_of_op<Op, compute_t<T>>;
    // Comparisons give u8; arithmetic gives T (O is then compute_t<T>, stored back as T).
    using Stored = std::conditional_t<std::is_same_v<O, uint8_t> && !std::is_same_v<T, uint8_t>, uint8_t, T>;
    Tensor out = Tensor::empty(shape, dtype_of<Stored>);
    const T* pa = detail::cdata<T>(a);
    const T* pb = detail::cdata<T>(b);
    Stored* po = detail::mdata<Stored>(out);
    StridedLoop<3> loop(shape,
                        {out.strides(), detail::broadcast_strides(a, shape), detail::broadcast_strides(b, shape)});
    loop.tile_transposed().for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
      if constexpr (std::is_same_v<Stored, O>) {
        binary_run<T, Op>(pa + offsets[1], pb + offsets[2], po + offsets[0], n, strides);
      } else {
        // 16-bit floats: compute in float, round each element on store.
        for (int64_t i = 0; i < n; ++i) {
          po[offsets[0] + i * strides[0]] =
              Stored(Op::apply(O(pa[offsets[1] + i * strides[1]]), O(pb[offsets[2] + i * strides[2]])));
        }
      }
    });
    return out;
  });
}

// out = op(a, s) with the scalar in a's compute type (float for 16-bit types, so bf16 + 1e-3
// is computed as torch does: in float, rounded once).
template <typename Op>
Tensor scalar_op(const Tensor& a, double scalar, const char* op) {
  detail::check_cpu(a, op, "a");
  return visit_dtype(a.dtype(), [&]<typename T>() {
    using C = compute_t<T>;
    const C s = detail::scalar_as<T>(scalar, op, "s");
    Tensor out = Tensor::empty(a.shape(), a.dtype());
    const T* pa = detail::cdata<T>(a);
    T* po = detail::mdata<T>(out);
    StridedLoop<2> loop(a.shape(), {out.strides(), a.strides()});
    loop.tile_transposed().for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
      if constexpr (std::is_floating_point_v<T>) {
        if (strides[0] == 1 && strides[1] == 1) {
          ArrayMap<T>(po + offsets[0], n) = Op::array(ConstArrayMap<T>(pa + offsets[1], n), Vector<T>::Constant(n, s));
          return;
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        po[offsets[0] + i * strides[0]] = T(Op::apply(C(pa[offsets[1] + i * strides[1]]), s));
      }
    });
    return out;
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "add").binary(BinaryOp::Add, a, b, "add");
  return binary_op<AddOp>(a, b, "add");
}
Tensor sub(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "sub").binary(BinaryOp::Sub, a, b, "sub");
  return binary_op<SubOp>(a, b, "sub");
}
Tensor mul(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "mul").binary(BinaryOp::Mul, a, b, "mul");
  return binary_op<MulOp>(a, b, "mul");
}
Tensor div(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "div").binary(BinaryOp::Div, a, b, "div");
  return binary_op<DivOp>(a, b, "div");
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "maximum").binary(BinaryOp::Max, a, b, "maximum");
  return binary_op<MaxOp>(a, b, "maximum");
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "minimum").binary(BinaryOp::Min, a, b, "minimum");
  return binary_op<MinOp>(a, b, "minimum");
}

Tensor add(const Tensor& a, double s) {
  if (on_device(a)) return device_kernels(a, "add").scalar(UnaryOp::AddScalar, a, s, "add");
  return scalar_op<AddOp>(a, s, "add");
}
Tensor mul(const Tensor& a, double s) {
  if (on_device(a)) return device_kernels(a, "mul").scalar(UnaryOp::MulScalar, a, s, "mul");
  return scalar_op<MulOp>(a, s, "mul");
}

Tensor eq(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "eq").binary(BinaryOp::Eq, a, b, "eq");
  return binary_op<EqOp>(a, b, "eq");
}
Tensor ne(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "ne").binary(BinaryOp::Ne, a, b, "ne");
  return binary_op<NeOp>(a, b, "ne");
}
Tensor lt(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "lt").binary(BinaryOp::Lt, a, b, "lt");
  return binary_op<LtOp>(a, b, "lt");
}
Tensor le(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "le").binary(BinaryOp::Le, a, b, "le");
  return binary_op<LeOp>(a, b, "le");
}
Tensor gt(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "gt").binary(BinaryOp::Gt, a, b, "gt");
  return binary_op<GtOp>(a, b, "gt");
}
Tensor ge(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "ge").binary(BinaryOp::Ge, a, b, "ge");
  return binary_op<GeOp>(a, b, "ge");
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "where").where(cond, a, b);
  const char* op = "where";
  detail::check_cpu(cond, op, "cond");
  detail::check_cpu(a, op, "a");
  detail::check_cpu(b, op, "b");
  detail::check_dtype_is(cond, DType::U8, op, "cond");
  detail::check_same_dtype(a, b, op, "a", "b");
  const Shape shape = detail::broadcast_shapes(cond.shape(), detail::broadcast_shapes(a.shape(), b.shape(), op), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  visit_dtype(a.dtype(), [&]<typename T>() {
    const uint8_t* pc = detail::cdata<uint8_t>(cond);
    const T* pa = detail::cdata<T>(a);
    const T* pb = detail::cdata<T>(b);
    T* po = detail::mdata<T>(out);
    StridedLoop<4> loop(shape, {out.strides(), detail::broadcast_strides(cond, shape),
                                detail::broadcast_strides(a, shape), detail::broadcast_strides(b, shape)});
    loop.tile_transposed().for_each_run([&](const auto& o, int64_t n, const auto& s) {
      for (int64_t i = 0; i < n; ++i) {
        po[o[0] + i * s[0]] = pc[o[1] + i * s[1]] ? pa[o[2] + i * s[2]] : pb[o[3] + i * s[3]];
      }
    });
  });
  return out;
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  if (on_device(a)) return device_kernels(a, "masked_fill").masked_fill(a, mask, value);
  const char* op = "masked_fill";
  detail::check_cpu(a, op, "a");
  detail::check_cpu(mask, op, "mask");
  detail::check_dtype_is(mask, DType::U8, op, "mask");
  // The mask broadcasts to a, never the other way: the result keeps a's shape.
  check<ShapeError>(detail::broadcast_shapes(a.shape(), mask.shape(), op) == a.shape(), op,
                    "mask of shape {} does not broadcast to a's shape {}", shape_str(mask.shape()),
                    shape_str(a.shape()));
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  visit_dtype(a.dtype(), [&]<typename T>() {
    const T fill = T(detail::scalar_as<T>(value, op, "value"));
    const T* pa = detail::cdata<T>(a);
    const uint8_t* pm = detail::cdata<uint8_t>(mask);
    T* po = detail::mdata<T>(out);
    StridedLoop<3> loop(a.shape(), {out.strides(), a.strides(), detail::broadcast_strides(mask, a.shape())});
    loop.tile_transposed().for_each_run([&](const auto& o, int64_t n, const auto& s) {
      for (int64_t i = 0; i < n; ++i) {
        po[o[0] + i * s[0]] = pm[o[2] + i * s[2]] ? fill : pa[o[1] + i * s[1]];
      }
    });
  });
  return out;
}

}  // namespace dtensor
