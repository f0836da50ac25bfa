// Copies between tensor views: contiguous(), clone(), to(dtype), copy_from(), fill().
//
// All of them go through one strided row loop: dims are coalesced first (adjacent dims whose
// strides chain in every operand merge into one), so a copy between two contiguous tensors is a
// single row and a narrow of a row-major matrix copies whole rows with memcpy.
#include "tensor/device_kernels.hpp"
#include "tensor/tensor.hpp"

#include <cstring>

namespace dtensor {

namespace {

struct RowLayout {
  Shape shape;                 // after coalescing; the last dim is the row
  std::vector<Shape> strides;  // one stride list per operand, same length as shape
};

RowLayout coalesce(const Shape& shape, std::vector<Shape> strides) {
  RowLayout out;
  out.strides.resize(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merges = !out.shape.empty();
    for (size_t k = 0; k < strides.size() && merges; ++k) {
      merges = out.strides[k].back() == strides[k][d] * shape[d];
    }
    if (merges) {
      out.shape.back() *= shape[d];
      for (size_t k = 0; k < strides.size(); ++k) out.strides[k].back() = strides[k][d];
    } else {
      out.shape.push_back(shape[d]);
      for (size_t k = 0; k < strides.size(); ++k) out.strides[k].push_back(strides[k][d]);
    }
  }
  if (out.shape.empty()) {  // a single element
    out.shape.push_back(1);
    for (auto& s : out.strides) s.push_back(1);
  }
  return out;
}

// Calls row(offsets, length, inner_strides) for every row; offsets are in elements per operand.
template <size_t N, typename RowFn>
void for_each_row(const RowLayout& layout, RowFn&& row) {
  const size_t ndim = layout.shape.size();
  const int64_t length = layout.shape.back();
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < ndim; ++d) rows *= layout.shape[d];
  std::array<int64_t, N> inner{};
  for (size_t k = 0; k < N; ++k) inner[k] = layout.strides[k].back();

  std::vector<int64_t> index(ndim, 0);
  std::array<int64_t, N> offset{};
  for (int64_t r = 0; r < rows; ++r) {
    row(offset, length, inner);
    // Advance the outer index like an odometer, updating the offsets incrementally.
    for (size_t d = ndim - 1; d-- > 0;) {
      for (size_t k = 0; k < N; ++k) offset[k] += layout.strides[k][d];
      if (++index[d] < layout.shape[d]) break;
      for (size_t k = 0; k < N; ++k) offset[k] -= layout.strides[k][d] * layout.shape[d];
      index[d] = 0;
    }
  }
}

template <typename Dst, typename Src>
void copy_rows(const RowLayout& layout, Dst* dst, const Src* src) {
  for_each_row<2>(layout, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& step) {
    Dst* d = dst + off[0];
    const Src* s = src + off[1];
    if constexpr (std::is_same_v<Dst, Src>) {
      if (step[0] == 1 && step[1] == 1) {
        std::memcpy(d, s, size_t(n) * sizeof(Dst));
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      d[i * step[0]] = Dst(compute_t<Dst>(compute_t<Src>(s[i * step[1]])));
    }
  });
}

// The device whose backend copies between a and b: the one that is not the CPU.
Device copy_device(const Tensor& a, const Tensor& b) { return a.device().is_cpu() ? b.device() : a.device(); }

}  // namespace

void Tensor::copy_from(const Tensor& src) const {
  check<ValueError>(defined() && src.defined(), "copy_from", "undefined tensor");
  Tensor source = src.shape() == shape_ ? src : src.expand(shape_);
  if (on_device(*this) || on_device(src)) {
    return device_kernels(copy_device(*this, src), "copy_from").copy(*this, source);
  }
  if (numel() == 0) return;
  RowLayout layout = coalesce(shape_, {strides_, source.strides()});
  visit_dtype(dtype_, [&]<typename Dst>() {
    visit_dtype(source.dtype(), [&]<typename Src>() {
      copy_rows(layout, static_cast<Dst*>(data_ptr()), static_cast<const Src*>(source.data_ptr()));
    });
  });
}

void Tensor::fill(double value) const {
  if (on_device(*this)) return device_kernels(*this, "fill").fill(*this, value);
  if (numel() == 0) return;
  RowLayout layout = coalesce(shape_, {strides_});
  visit_dtype(dtype_, [&]<typename T>() {
    const T v = T(compute_t<T>(value));
    T* base = static_cast<T*>(data_ptr());
    for_each_row<1>(layout, [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& step) {
      for (int64_t i = 0; i < n; ++i) base[off[0] + i * step[0]] = v;
    });
  });
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out = empty(shape_, dtype_, device);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype, device());
  out.copy_from(*this);
  return out;
}

}  // namespace dtensor
