// Whole-tensor comparisons: allclose, equal, max_abs_diff (on the host, for tensors on any device).
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

// The comparisons read both tensors on the host; a tensor on a GPU is copied there first (they
// are checks, not kernels: one copy each is fine).
std::pair<Tensor, Tensor> on_host(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_defined(a, op, "a");
  detail::check_defined(b, op, "b");
  try {
    return {a.to(Device::cpu()), b.to(Device::cpu())};
  } catch (const DeviceError& e) {  // no such GPU, or a build without CUDA
    fail<DeviceError>(op, "cannot copy {} and {} to the host: {}", a.device(), b.device(), e.what());
  }
}

}  // namespace

bool allclose(const Tensor& a_in, const Tensor& b_in, double rtol, double atol) {
  const auto [a, b] = on_host(a_in, b_in, "allclose");
  if (a.shape() != b.shape()) return false;
  return for_each_pair(a, b, [&](double x, double y) {
    // An infinity is close only to itself (the tolerance would be infinite too).
    if (std::isinf(x) || std::isinf(y)) return x == y;
    return std::abs(x - y) <= atol + rtol * std::abs(y);
  });
}

bool equal(const Tensor& a_in, const Tensor& b_in) {
  const auto [a, b] = on_host(a_in, b_in, "equal");
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

double max_abs_diff(const Tensor& a_in, const Tensor& b_in) {
  const char* op = "max_abs_diff";
  const auto [a, b] = on_host(a_in, b_in, op);
  check<ShapeError>(a.shape() == b.shape(), op, "a and b must have the same shape, got {} and {}", shape_str(a.shape()),
                    shape_str(b.shape()));
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
