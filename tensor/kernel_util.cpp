// Broadcasting and dim helpers shared by the CPU kernels.
#include "tensor/kernel_util.hpp"

namespace dtensor::detail {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t ndim = std::max(a.size(), b.size());
  Shape out(ndim);
  for (size_t i = 0; i < ndim; ++i) {
    // Align from the right: i counts dims from the end.
    const int64_t size_a = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t size_b = i < b.size() ? b[b.size() - 1 - i] : 1;
    check<ShapeError>(size_a == size_b || size_a == 1 || size_b == 1, op,
                      "shapes {} and {} do not broadcast: dim -{} has sizes {} and {}", shape_str(a), shape_str(b),
                      i + 1, size_a, size_b);
    out[ndim - 1 - i] = size_a == 1 ? size_b : size_a;
  }
  return out;
}

Shape broadcast_strides(const Tensor& t, const Shape& out_shape) {
  const size_t lead = out_shape.size() - size_t(t.dim());
  Shape strides(out_shape.size(), 0);
  for (size_t d = 0; d < size_t(t.dim()); ++d) {
    strides[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  }
  return strides;
}

int64_t normalize_dim_or_scalar(int64_t dim, int64_t ndim, const char* op) {
  if (ndim > 0) return normalize_dim(dim, ndim, op);
  check<ShapeError>(dim == 0 || dim == -1, op, "dim {} is out of range for a 0-d tensor (expected 0 or -1)", dim);
  return 0;
}

std::vector<bool> reduced_dim_mask(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<bool> reduced(size_t(ndim), dims.empty());
  for (int64_t dim : dims) {
    const int64_t d = normalize_dim_or_scalar(dim, ndim, op);
    if (ndim == 0) continue;  // a 0-d tensor has nothing to fold
    check<ShapeError>(!reduced[size_t(d)], op, "dim {} appears more than once in dims", dim);
    reduced[size_t(d)] = true;
  }
  return reduced;
}

Shape reduced_shape(const Shape& shape, const std::vector<bool>& reduced, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!reduced[d])
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

}  // namespace dtensor::detail
