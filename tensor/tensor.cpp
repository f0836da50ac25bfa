// Tensor metadata, factories and views. Copies with dtype conversion live in tensor_copy.cpp.
#include "tensor/tensor.hpp"

#include <algorithm>
#include <numeric>

namespace dtensor {

int64_t shape_numel(const Shape& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t normalized = dim < 0 ? dim + ndim : dim;
  check<ShapeError>(normalized >= 0 && normalized < ndim, op,
                    "dim {} out of range for a tensor with {} dims (expected [{}, {}))", dim, ndim, -ndim, ndim);
  return normalized;
}

namespace {
// Whether the contiguous strides of a shape of non-negative sizes fit int64: the product of its
// sizes, a zero counted as 1, does (a zero-size tensor's strides still multiply its other sizes).
bool strides_fit(const Shape& shape) {
  int64_t extent = 1;
  for (int64_t size : shape) {
    if (__builtin_mul_overflow(extent, std::max<int64_t>(size, 1), &extent)) return false;
  }
  return true;
}

void check_shape(const Shape& shape, const char* op) {
  for (int64_t s : shape) {
    check<ShapeError>(s >= 0, op, "negative size {} in shape {}", s, shape_str(shape));
  }
  check<ShapeError>(strides_fit(shape), op, "shape {} overflows int64 strides", shape_str(shape));
}
}  // namespace

// Factories -----------------------------------------------------------------------------------

Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype)
    : storage_(std::move(storage)),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(offset),
      dtype_(dtype) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "empty");
  auto storage = Storage::allocate(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  return Tensor(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(value);
  return t;
}

Tensor Tensor::arange(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  visit_dtype(dtype, [&]<typename T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = T(compute_t<T>(i));
  });
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Storage::Deleter deleter, Device device) {
  check_shape(shape, "from_blob");
  check<ValueError>(data != nullptr || shape_numel(shape) == 0, "from_blob", "null pointer for a non-empty shape {}",
                    shape_str(shape));
  size_t nbytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(Storage::wrap(data, nbytes, device, std::move(deleter)), shape, contiguous_strides(shape), 0, dtype);
}

// Metadata ------------------------------------------------------------------------------------

int64_t Tensor::size(int64_t dim) const { return shape_[normalize_dim(dim, this->dim(), "size")]; }
int64_t Tensor::stride(int64_t dim) const { return strides_[normalize_dim(dim, this->dim(), "stride")]; }

Device Tensor::device() const { return storage_ ? storage_->device() : Device::cpu(); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;  // the stride of a size-1 dim never matters
    if (shape_[i] == 0) return true;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  check<ValueError>(defined(), "data_ptr", "tensor is undefined");
  return static_cast<char*>(storage_->data()) + offset_ * int64_t(element_size());
}

void Tensor::check_cpu_access(DType expected, const char* op) const {
  check<DTypeError>(dtype_ == expected, op, "requested {} elements of a {} tensor", expected, dtype_);
  check<DeviceError>(device().is_cpu(), op, "host access to a tensor on {}", device());
}

std::string Tensor::to_string() const { return fmt::format("Tensor({}, {}, {})", dtype_, shape_str(shape_), device()); }

// Views ---------------------------------------------------------------------------------------

Tensor Tensor::with_layout(Shape shape, Shape strides, int64_t offset) const {
  return Tensor(storage_, std::move(shape), std::move(strides), offset, dtype_);
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  int64_t d = normalize_dim(dim, this->dim(), "narrow");
  check<ShapeError>(start >= 0 && length >= 0 && start + length <= shape_[d], "narrow",
                    "start {} + length {} exceeds size {} of dim {}", start, length, shape_[d], dim);
  Shape shape = shape_;
  shape[d] = length;
  return with_layout(std::move(shape), strides_, offset_ + (length > 0 ? start * strides_[d] : 0));
}

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  int64_t d = normalize_dim(dim, this->dim(), "slice");
  check<ValueError>(step > 0, "slice", "step must be positive, got {}", step);
  start = std::clamp<int64_t>(start < 0 ? start + shape_[d] : start, 0, shape_[d]);
  end = std::clamp<int64_t>(end < 0 ? end + shape_[d] : end, start, shape_[d]);
  Shape shape = shape_;
  Shape strides = strides_;
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  return with_layout(std::move(shape), std::move(strides), offset_ + (shape[d] > 0 ? start * strides_[d] : 0));
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  int64_t d = normalize_dim(dim, this->dim(), "select");
  int64_t i = index < 0 ? index + shape_[d] : index;
  check<ShapeError>(i >= 0 && i < shape_[d], "select", "index {} out of range for size {} of dim {}", index, shape_[d],
                    dim);
  Shape shape = shape_;
  Shape strides = strides_;
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return with_layout(std::move(shape), std::move(strides), offset_ + i * strides_[d]);
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> order(shape_.size());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[normalize_dim(dim0, dim(), "transpose")], order[normalize_dim(dim1, dim(), "transpose")]);
  return permute(order);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  check<ShapeError>(int64_t(dims.size()) == dim(), "permute", "got {} dims for a tensor with {} dims", dims.size(),
                    dim());
  Shape shape(dims.size());
  Shape strides(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = normalize_dim(dims[i], dim(), "permute");
    check<ShapeError>(!seen[d], "permute", "dim {} repeated in ({})", dims[i], fmt::join(dims, ", "));
    seen[d] = true;
    shape[i] = shape_[d];
    strides[i] = strides_[d];
  }
  return with_layout(std::move(shape), std::move(strides), offset_);
}

Tensor Tensor::expand(const Shape& shape) const {
  check<ShapeError>(shape.size() >= shape_.size(), "expand", "cannot expand shape {} to fewer dims {}",
                    shape_str(shape_), shape_str(shape));
  size_t lead = shape.size() - shape_.size();
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < shape_.size(); ++i) {
    int64_t target = shape[lead + i];
    bool same = target == shape_[i] || target == -1;
    check<ShapeError>(same || shape_[i] == 1, "expand", "cannot expand shape {} to {} (dim {})", shape_str(shape_),
                      shape_str(shape), lead + i);
    strides[lead + i] = same ? strides_[i] : 0;
  }
  Shape out = shape;
  for (size_t i = 0; i < shape_.size(); ++i) out[lead + i] = out[lead + i] == -1 ? shape_[i] : out[lead + i];
  check_shape(out, "expand");
  return with_layout(std::move(out), std::move(strides), offset_);
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  int64_t d = normalize_dim(dim, this->dim() + 1, "unsqueeze");
  Shape shape = shape_;
  Shape strides = strides_;
  int64_t stride = d < this->dim() ? strides_[d] * shape_[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return with_layout(std::move(shape), std::move(strides), offset_);
}

Tensor Tensor::squeeze(int64_t dim) const {
  int64_t d = normalize_dim(dim, this->dim(), "squeeze");
  check<ShapeError>(shape_[d] == 1, "squeeze", "dim {} has size {}, expected 1", dim, shape_[d]);
  return select(d, 0);
}

namespace {
// Resolves a single -1 in a requested shape against numel.
Shape infer_shape(const Shape& requested, int64_t numel, const char* op) {
  Shape shape = requested;
  int64_t known = 1;
  int infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      check<ShapeError>(infer_at < 0, op, "more than one -1 in shape {}", shape_str(requested));
      infer_at = int(i);
    } else {
      check<ShapeError>(shape[i] >= 0, op, "negative size in shape {}", shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    check<ShapeError>(known != 0 && numel % known == 0, op, "shape {} is invalid for {} elements", shape_str(requested),
                      numel);
    shape[infer_at] = numel / known;
  }
  check<ShapeError>(shape_numel(shape) == numel, op, "shape {} is invalid for {} elements", shape_str(requested),
                    numel);
  return shape;
}
}  // namespace

// A view needs, for each group of input dims merged or split, strides that chain; we support the
// common case that the whole tensor is contiguous, which is what every caller here needs.
Tensor Tensor::view(const Shape& shape) const {
  Shape out = infer_shape(shape, numel(), "view");
  check<ShapeError>(is_contiguous(), "view", "tensor with shape {} and strides {} is not contiguous; use reshape()",
                    shape_str(shape_), shape_str(strides_));
  return with_layout(out, contiguous_strides(out), offset_);
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t start = normalize_dim(start_dim, dim(), "flatten");
  int64_t end = normalize_dim(end_dim, dim(), "flatten");
  check<ShapeError>(start <= end, "flatten", "start_dim {} is after end_dim {}", start_dim, end_dim);
  Shape shape(shape_.begin(), shape_.begin() + start);
  int64_t merged = 1;
  for (int64_t i = start; i <= end; ++i) merged *= shape_[i];
  shape.push_back(merged);
  shape.insert(shape.end(), shape_.begin() + end + 1, shape_.end());
  return reshape(shape);
}

}  // namespace dtensor
