// Whole-tensor comparisons: allclose, equal, max_abs_diff.
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor {
namespace {

// Calls visit(x, y) with every pair of corresponding elements of a and b (equal shapes, any
// dtypes, any strides) converted to double, until visit returns false. Returns false if stopped.
template <typename Visit>
bool for_each_pair(const Tensor& a, const Tensor& b, Visit visit) {
  bool completed = true;
  visit_dtype(a.dtype(), [&]<typename A>() {
    visit_dtype(b.dtype(), [&]<typename B>() {
      const A* pa = detail::cdata<A>(a);
      const B* pb = detail::cdata<B>(b);
      detail::StridedLoop<2> loop(a.shape(), {a.strides(), b.strides()});
      loop.for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
        for (int64_t i = 0; i < n && completed; ++i) {
          completed = visit(double(compute_t<A>(pa[offsets[0] + i * strides[0]])),
                            double(compute_t<B>(pb[offsets[1] + i * strides[1]])));
        }
      });
    });
  });
  return completed;
}

void check_cpu_pair(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_cpu(a, op, "a");
  detail::check_cpu(b, op, "b");
}

}  // namespace

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  check_cpu_pair(a, b, "allclose");
  if (a.shape() != b.shape()) return false;
  return for_each_pair(a, b, [&](double x, double y) {
    // An infinity is close only to itself (the tolerance would be infinite too).
    if (std::isinf(x) || std::isinf(y)) return x == y;
    return std::abs(x - y) <= atol + rtol * std::abs(y);
  });
}

bool equal(const Tensor& a, const Tensor& b) {
  check_cpu_pair(a, b, "equal");
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  // Compared in the dtype itself: i64 values above 2^53 would collide as doubles.
  return visit_dtype(a.dtype(), [&]<typename T>() {
    using C = compute_t<T>;
    const T* pa = detail::cdata<T>(a);
    const T* pb = detail::cdata<T>(b);
    bool same = true;
    detail::StridedLoop<2> loop(a.shape(), {a.strides(), b.strides()});
    loop.for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
      for (int64_t i = 0; i < n && same; ++i) {
        same = C(pa[offsets[0] + i * strides[0]]) == C(pb[offsets[1] + i * strides[1]]);
      }
    });
    return same;
  });
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const char* op = "max_abs_diff";
  check_cpu_pair(a, b, op);
  check<ShapeError>(a.shape() == b.shape(), op, "a and b must have the same shape, got {} and {}",
                    shape_str(a.shape()), shape_str(b.shape()));
  double largest = 0.0;
  for_each_pair(a, b, [&](double x, double y) {
    if (std::isnan(x) || std::isnan(y)) {
      largest = std::numeric_limits<double>::quiet_NaN();
      return false;
    }
    if (x != y) largest = std::max(largest, std::abs(x - y));  // equal infinities differ by 0
    return true;
  });
  return largest;
}

}  // namespace dtensor
