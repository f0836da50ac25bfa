// Reductions over dims (sum, mean, amax, amin), argmax, softmax and log_softmax.
//
// A reduction walks the INPUT in its own memory order (StridedLoop::order_by) against an
// accumulator whose strides are 0 on the reduced dims. A run along a reduced dim folds into
// one accumulator (an Eigen redux when contiguous); a run along a kept dim accumulates
// elementwise (vectorised when contiguous). So both "sum over the last dim" and "sum over
// dim 0" read memory sequentially.
#include "tensor/device_kernels.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor {
namespace {

using detail::ArrayMap;
using detail::ConstArrayMap;
using detail::StridedLoop;

// Accumulator types; results are converted back to the input dtype. Integers accumulate in
// int64 (wrapping). Floating sums accumulate in double: a float accumulator loses ~1e-4
// relative over a million elements even with Eigen's vectorised partial sums, and the
// reductions here are memory-bound, so the wider adds cost nothing measurable. Max and min
// are exact in the compute type.
template <typename T>
using sum_acc_t = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
template <typename T>
using minmax_acc_t = std::conditional_t<std::is_integral_v<T>, int64_t, compute_t<T>>;

template <typename A>
bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return std::isnan(v);
  return false;
}

struct SumReducer {
  template <typename T>
  using acc = sum_acc_t<T>;
  template <typename A>
  static A init() {
    return A(0);
  }
  template <typename A>
  static A combine(A acc, A x) {
    return detail::wrapping_add(acc, x);
  }
  template <typename M>
  static auto fold(const M& run) {
    return run.sum();
  }
  template <typename M, typename R>
  static void accumulate(M& acc, const R& run) {
    acc += run;
  }
};

// Max and min propagate NaN (torch.amax does).
struct MaxReducer {
  template <typename T>
  using acc = minmax_acc_t<T>;
  template <typename A>
  static A init() {
    if constexpr (std::is_floating_point_v<A>) return -std::numeric_limits<A>::infinity();
    return std::numeric_limits<A>::lowest();
  }
  template <typename A>
  static A combine(A acc, A x) {
    return (is_nan(acc) || acc >= x) ? acc : x;  // NaN x: acc >= NaN is false, so x wins
  }
  template <typename M>
  static auto fold(const M& run) {
    return run.template maxCoeff<Eigen::PropagateNaN>();
  }
  template <typename M, typename R>
  static void accumulate(M& acc, const R& run) {
    using A = typename M::Scalar;
    acc = acc.binaryExpr(run, Eigen::internal::scalar_max_op<A, A, Eigen::PropagateNaN>());
  }
};

struct MinReducer {
  template <typename T>
  using acc = minmax_acc_t<T>;
  template <typename A>
  static A init() {
    if constexpr (std::is_floating_point_v<A>) return std::numeric_limits<A>::infinity();
    return std::numeric_limits<A>::max();
  }
  template <typename A>
  static A combine(A acc, A x) {
    return (is_nan(acc) || acc <= x) ? acc : x;
  }
  template <typename M>
  static auto fold(const M& run) {
    return run.template minCoeff<Eigen::PropagateNaN>();
  }
  template <typename M, typename R>
  static void accumulate(M& acc, const R& run) {
    using A = typename M::Scalar;
    acc = acc.binaryExpr(run, Eigen::internal::scalar_min_op<A, A, Eigen::PropagateNaN>());
  }
};

constexpr int64_t kBlock = 1024;  // elements folded per Eigen call (fits in L1, on the stack)

// Folds n elements (stride s) into acc. Floating runs go through Eigen's vectorised folds one
// block at a time (16-bit values widened into a float buffer first); block results combine in
// the accumulator type, so a float sum's rounding error grows with the block, not the run.
template <typename R, typename T, typename A>
A fold_run(const T* in, int64_t stride, int64_t n, A acc) {
  using C = compute_t<T>;
  if constexpr (std::is_floating_point_v<C>) {
    C buffer[kBlock];
    for (int64_t start = 0; start < n; start += kBlock) {
      const int64_t m = std::min(kBlock, n - start);
      const C* block = nullptr;
      if constexpr (detail::is_native_v<T>) {
        if (stride == 1) block = in + start;
      }
      if (block == nullptr) {
        for (int64_t i = 0; i < m; ++i) buffer[i] = C(in[(start + i) * stride]);
        block = buffer;
      }
      acc = R::combine(acc, A(R::fold(ConstArrayMap<C>(block, m))));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) acc = R::combine(acc, A(in[i * stride]));
  }
  return acc;
}

// Folds one input run (n elements) into the accumulators it maps to: a single one when the
// run goes along a reduced dim (acc_stride 0), one per element otherwise.
template <typename R, typename T, typename A>
void reduce_run(const T* in, int64_t in_stride, A* acc, int64_t acc_stride, int64_t n) {
  if (acc_stride == 0) {
    *acc = fold_run<R>(in, in_stride, n, *acc);
    return;
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (in_stride == 1 && acc_stride == 1) {
      ArrayMap<A> acc_run(acc, n);
      R::accumulate(acc_run, ConstArrayMap<T>(in, n).template cast<A>());
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    acc[i * acc_stride] = R::combine(acc[i * acc_stride], A(in[i * in_stride]));
  }
}

// Reduces a over the masked dims. finish(acc, count) maps an accumulator to the stored value.
template <typename R, typename T, typename Finish>
Tensor reduce_dims(const Tensor& a, const std::vector<bool>& reduced, bool keepdim, Finish finish) {
  using A = typename R::template acc<T>;
  const Shape kept = detail::reduced_shape(a.shape(), reduced, /*keepdim=*/true);
  int64_t reduced_count = 1;
  for (size_t d = 0; d < reduced.size(); ++d) reduced_count *= reduced[d] ? a.shape()[d] : 1;

  std::vector<A> acc(size_t(shape_numel(kept)), R::template init<A>());
  Shape acc_strides = contiguous_strides(kept);
  for (size_t d = 0; d < reduced.size(); ++d) {
    if (reduced[d]) acc_strides[d] = 0;
  }
  const T* in = detail::cdata<T>(a);
  StridedLoop<2> loop(a.shape(), {a.strides(), acc_strides});
  loop.order_by(0).for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
    reduce_run<R>(in + offsets[0], strides[0], acc.data() + offsets[1], strides[1], n);
  });

  Tensor out = Tensor::empty(detail::reduced_shape(a.shape(), reduced, keepdim), a.dtype());
  T* po = detail::mdata<T>(out);
  for (size_t i = 0; i < acc.size(); ++i) po[i] = T(finish(acc[i], reduced_count));
  return out;
}

template <typename R>
Tensor reduce_op(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
  detail::check_cpu(a, op, "a");
  const std::vector<bool> reduced = detail::reduced_dim_mask(dims, a.dim(), op);
  if constexpr (!std::is_same_v<R, SumReducer>) {
    // A max over nothing has no value (torch raises too).
    for (size_t d = 0; d < reduced.size(); ++d) {
      check<ShapeError>(!reduced[d] || a.shape()[d] > 0, op, "cannot reduce over dim {} of size 0 (shape {})", d,
                        shape_str(a.shape()));
    }
  }
  return visit_dtype(a.dtype(), [&]<typename T>() {
    return reduce_dims<R, T>(a, reduced, keepdim, [](auto acc, int64_t) { return acc; });
  });
}

// Calls fn(in_offset, out_offset) for the first element of every line of a along dim, with
// out_strides the output's strides over a's dims (a 0-d tensor is one line of one element).
template <typename Fn>
void for_each_line(const Tensor& a, int64_t dim, const Shape& out_strides, Fn fn) {
  Shape starts = a.shape();
  if (a.dim() > 0) starts[size_t(dim)] = 1;
  StridedLoop<2> loop(starts, {a.strides(), out_strides});
  loop.for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
    for (int64_t i = 0; i < n; ++i) fn(offsets[0] + i * strides[0], offsets[1] + i * strides[1]);
  });
}

// Sum of a contiguous float/double array, block by block into a double (see fold_run).
template <typename M>
double blocked_sum(const M& x) {
  double total = 0;
  for (Eigen::Index start = 0; start < x.size(); start += kBlock) {
    total += double(x.segment(start, std::min<Eigen::Index>(kBlock, x.size() - start)).sum());
  }
  return total;
}

// out = softmax(in) or log_softmax(in) of one contiguous line; out may be in itself. The max
// is subtracted first so exp never overflows.
template <typename In, typename Out>
void softmax_line(const In& in, Out& out, bool log) {
  using C = typename In::Scalar;
  const C max = in.template maxCoeff<Eigen::PropagateNaN>();
  if (log) {
    out = in - max;
    out -= C(std::log(blocked_sum(out.exp())));
  } else {
    out = (in - max).exp();
    out /= C(blocked_sum(out));
  }
}

// softmax (log = false) or log_softmax along dim. Contiguous float/double lines are computed in
// place in the output; other lines are widened into a contiguous buffer first.
Tensor softmax_impl(const Tensor& a, int64_t dim, bool log, const char* op) {
  detail::check_cpu(a, op, "a");
  detail::check_floating(a, op, "a");
  dim = detail::normalize_dim_or_scalar(dim, a.dim(), op);
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  const int64_t n = a.dim() == 0 ? 1 : a.shape()[size_t(dim)];
  const int64_t in_step = a.dim() == 0 ? 1 : a.strides()[size_t(dim)];
  const int64_t out_step = a.dim() == 0 ? 1 : out.strides()[size_t(dim)];
  if (out.numel() == 0) return out;
  visit_dtype(a.dtype(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<compute_t<T>>) {
      using C = compute_t<T>;
      const T* in = detail::cdata<T>(a);
      T* po = detail::mdata<T>(out);
      detail::Vector<C> line(n);
      for_each_line(a, dim, out.strides(), [&](int64_t in_off, int64_t out_off) {
        if constexpr (detail::is_native_v<T>) {
          if (in_step == 1 && out_step == 1) {
            ArrayMap<C> out_line(po + out_off, n);
            softmax_line(ConstArrayMap<C>(in + in_off, n), out_line, log);
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i) line[i] = C(in[in_off + i * in_step]);
        softmax_line(line, line, log);
        for (int64_t i = 0; i < n; ++i) po[out_off + i * out_step] = T(line[i]);
      });
    }
  });
  return out;
}

// Index of the first maximum of n elements (stride step); a NaN counts as the maximum, as in
// torch.argmax. Contiguous float/double lines take vectorised block maxima and scan only the
// blocks that raise the maximum.
template <typename T>
int64_t first_max_index(const T* in, int64_t step, int64_t n) {
  using C = compute_t<T>;
  int64_t best = 0;
  C best_value = C(in[0]);
  if (is_nan(best_value)) return 0;
  if constexpr (std::is_floating_point_v<T>) {
    if (step == 1) {
      for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t m = std::min(kBlock, n - start);
        const C block_max = ConstArrayMap<C>(in + start, m).template maxCoeff<Eigen::PropagateNaN>();
        if (!(is_nan(block_max) || block_max > best_value)) continue;
        int64_t i = 0;
        while (!(in[start + i] == block_max || is_nan(in[start + i]))) ++i;
        if (is_nan(in[start + i])) return start + i;
        best = start + i;
        best_value = block_max;
      }
      return best;
    }
  }
  for (int64_t i = 1; i < n; ++i) {
    const C v = C(in[i * step]);
    if (is_nan(v)) return i;
    if (v > best_value) {
      best = i;
      best_value = v;
    }
  }
  return best;
}

}  // namespace

Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  if (on_device(a)) return device_kernels(a, "sum").reduce(RowReduce::Sum, a, dims, keepdim, "sum");
  return reduce_op<SumReducer>(a, dims, keepdim, "sum");
}

Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  if (on_device(a)) return device_kernels(a, "mean").reduce(RowReduce::Mean, a, dims, keepdim, "mean");
  const char* op = "mean";
  detail::check_cpu(a, op, "a");
  detail::check_floating(a, op, "a");
  const std::vector<bool> reduced = detail::reduced_dim_mask(dims, a.dim(), op);
  return visit_dtype(a.dtype(), [&]<typename T>() -> Tensor {
    if constexpr (std::is_floating_point_v<compute_t<T>>) {
      // An empty reduction gives 0 / 0 = NaN, as torch.mean does.
      return reduce_dims<SumReducer, T>(a, reduced, keepdim,
                                        [](auto acc, int64_t count) { return acc / decltype(acc)(count); });
    } else {
      fail<DTypeError>(op, "unreachable integer dtype {}", a.dtype());
    }
  });
}

Tensor amax(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  if (on_device(a)) return device_kernels(a, "amax").reduce(RowReduce::Max, a, dims, keepdim, "amax");
  return reduce_op<MaxReducer>(a, dims, keepdim, "amax");
}

Tensor amin(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  if (on_device(a)) return device_kernels(a, "amin").reduce(RowReduce::Min, a, dims, keepdim, "amin");
  return reduce_op<MinReducer>(a, dims, keepdim, "amin");
}

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  if (on_device(a)) return device_kernels(a, "argmax").argmax(a, dim, keepdim);
  const char* op = "argmax";
  detail::check_cpu(a, op, "a");
  const int64_t d = detail::normalize_dim_or_scalar(dim, a.dim(), op);
  const int64_t n = a.dim() == 0 ? 1 : a.shape()[size_t(d)];
  check<ShapeError>(n > 0, op, "cannot take argmax over dim {} of size 0 (shape {})", dim, shape_str(a.shape()));
  std::vector<bool> reduced(size_t(a.dim()), false);
  if (a.dim() > 0) reduced[size_t(d)] = true;
  Tensor out = Tensor::empty(detail::reduced_shape(a.shape(), reduced, keepdim), DType::I64);
  if (out.numel() == 0) return out;
  Shape out_strides = contiguous_strides(detail::reduced_shape(a.shape(), reduced, /*keepdim=*/true));
  const int64_t step = a.dim() == 0 ? 0 : a.strides()[size_t(d)];
  int64_t* po = detail::mdata<int64_t>(out);
  visit_dtype(a.dtype(), [&]<typename T>() {
    const T* in = detail::cdata<T>(a);
    for_each_line(a, d, out_strides,
                  [&](int64_t in_off, int64_t out_off) { po[out_off] = first_max_index(in + in_off, step, n); });
  });
  return out;
}

Tensor softmax(const Tensor& a, int64_t dim) {
  if (on_device(a)) return device_kernels(a, "softmax").softmax(a, dim, false, "softmax");
  return softmax_impl(a, dim, false, "softmax");
}

Tensor log_softmax(const Tensor& a, int64_t dim) {
  if (on_device(a)) return device_kernels(a, "log_softmax").softmax(a, dim, true, "log_softmax");
  return softmax_impl(a, dim, true, "log_softmax");
}

}  // namespace dtensor
