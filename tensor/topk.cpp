// topk: the k largest entries along a dim, largest first, as torch.topk(largest=True,
// sorted=True). Equal values keep index order (the lower index first) and NaN counts as larger
// than every number, so the result is deterministic: routing in a mixture of experts picks the
// same experts on every rank and in every run. CUDA tensors go to the CUDA backend (k <= 16).
#include "tensor/device_kernels.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor {

namespace {

// Whether the element (value a, index i) ranks before (value b, index j).
template <typename C>
bool ranks_before(C a, int64_t i, C b, int64_t j) {
  if constexpr (std::is_floating_point_v<C>) {
    const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
    if (a_nan || b_nan) return a_nan && (!b_nan || i < j);
  }
  return a > b || (a == b && i < j);
}

}  // namespace

std::pair<Tensor, Tensor> topk(const Tensor& values, int64_t k, int64_t dim) {
  detail::check_defined(values, "topk", "values");
  if (values.dim() == 0) {  // torch treats a scalar as one element along dim 0 / -1
    detail::normalize_dim_or_scalar(dim, 0, "topk");
    auto [v, i] = topk(values.reshape({1}), k, 0);
    return {v.reshape({}), i.reshape({})};
  }
  dim = normalize_dim(dim, values.dim(), "topk");
  const int64_t n = values.size(dim);
  check<ValueError>(k >= 0 && k <= n, "topk", "k = {} is out of range for dim {} of size {}", k, dim, n);
  if (on_device(values)) return device_kernels(values, "topk").topk(values, k, dim);
  detail::check_cpu(values, "topk", "values");

  // Work on rows along the last dim, then move the dim back.
  const Tensor rows = values.transpose(dim, -1).contiguous();
  Shape out_shape = rows.shape();
  out_shape.back() = k;
  Tensor top_values = Tensor::empty(out_shape, values.dtype());
  Tensor top_indices = Tensor::empty(out_shape, DType::I64);
  const int64_t row_count = n == 0 ? 0 : rows.numel() / n;
  visit_dtype(values.dtype(), [&]<typename T>() {
    using C = compute_t<T>;
    const T* in = rows.data<T>();
    T* out_v = top_values.data<T>();
    int64_t* out_i = top_indices.data<int64_t>();
    std::vector<int64_t> order(size_t(n), 0);
    for (int64_t r = 0; r < row_count; ++r) {
      const T* row = in + r * n;
      std::iota(order.begin(), order.end(), int64_t(0));
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int64_t i, int64_t j) { return ranks_before(C(row[i]), i, C(row[j]), j); });
      for (int64_t c = 0; c < k; ++c) {
        out_v[r * k + c] = row[order[size_t(c)]];
        out_i[r * k + c] = order[size_t(c)];
      }
    }
  });
  return {top_values.transpose(dim, -1).contiguous(), top_indices.transpose(dim, -1).contiguous()};
}

}  // namespace dtensor
