// The local dense tensor: a strided view (shape, strides, offset, dtype) of shared Storage.
//
// Views (narrow, select, transpose, permute, expand, view/reshape of contiguous data) share
// storage and cost no copy; contiguous(), clone() and to(dtype) copy. Strides and offsets are
// counted in elements. Element access through data<T>() is for CPU tensors only; code that must
// also serve CUDA tensors works through data_ptr() and the device tag.
#pragma once

#include "tensor/dtype.hpp"
#include "tensor/storage.hpp"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dtensor {

using Shape = std::vector<int64_t>;

// A tensor's autograd state, defined by autograd/ (autograd/node.hpp). tensor/ only carries the
// slot, as PyTorch's TensorImpl carries AutogradMeta, so it depends on nothing above it.
struct AutogradMeta;

int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"
// Maps dim (negative counts from the end) into [0, ndim); throws ShapeError naming op otherwise.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false

  // Factories ---------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype, Device device = Device::cpu());
  // 0, 1, 2, ... numel-1 in row-major order.
  static Tensor arange(const Shape& shape, DType dtype);
  // Wraps memory without copying; deleter (may be empty) runs when the last view is released.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, Storage::Deleter deleter = {},
                          Device device = Device::cpu());
  // Copies host values into a new CPU tensor of T's dtype.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);

  // Metadata ----------------------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t size(int64_t dim) const;  // negative dims count from the end
  int64_t stride(int64_t dim) const;
  int64_t numel() const { return shape_numel(shape_); }
  int64_t storage_offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return size_t(numel()) * element_size(); }
  Device device() const;
  bool is_contiguous() const;
  bool shares_storage(const Tensor& other) const { return storage_ == other.storage_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // Address of element 0 (after the storage offset). Valid on any device.
  void* data_ptr() const;
  // Typed host pointer; throws unless T matches dtype() and the tensor is on the CPU.
  template <typename T>
  T* data() const;
  // The single element of a one-element tensor, converted to T (copied from a device if needed).
  template <typename T>
  T item() const;
  // Copies all elements (in row-major order of the view) to a host vector of T (any device).
  template <typename T>
  std::vector<T> to_vector() const;

  // Views: no data is copied -------------------------------------------------------------------
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor expand(const Shape& shape) const;  // size-1 dims (and new leading dims) get stride 0
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  // A view with a new shape (one dim may be -1); throws ShapeError if the strides do not allow it.
  Tensor view(const Shape& shape) const;
  // view() when possible, otherwise a contiguous copy reshaped.
  Tensor reshape(const Shape& shape) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // Copies -----------------------------------------------------------------------------------
  Tensor contiguous() const;     // returns *this when already contiguous
  Tensor clone() const;          // always a new contiguous tensor
  Tensor to(DType dtype) const;  // converting copy (returns *this when dtype matches)
  // Copy to another device, same dtype and shape (returns *this when already there).
  Tensor to(Device device) const;
  // Copies src into this view element-wise, converting dtype; shapes must match (src may broadcast).
  void copy_from(const Tensor& src) const;
  void fill(double value) const;

  std::string to_string() const;  // short description: "Tensor(f32, [2, 3], cpu)"

  // Autograd slot (autograd/autograd.hpp reads and sets it). Empty unless the tensor is a leaf that
  // requires a gradient or the output of a recorded op, so inference copies a null pointer. Copies
  // of the handle share it; new views and copies made by the methods above start without it (the
  // methods that return *this keep it).
  const std::shared_ptr<AutogradMeta>& autograd_meta() const { return autograd_meta_; }
  void set_autograd_meta(std::shared_ptr<AutogradMeta> meta) { autograd_meta_ = std::move(meta); }

 private:
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype);
  Tensor with_layout(Shape shape, Shape strides, int64_t offset) const;
  void check_cpu_access(DType expected, const char* op) const;

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
  std::shared_ptr<AutogradMeta> autograd_meta_;
};

// Template definitions ---------------------------------------------------------------------------

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  check<ShapeError>(int64_t(values.size()) == shape_numel(shape), "from_vector",
                    "{} values do not fill shape {} ({} elements)", values.size(), shape_str(shape),
                    shape_numel(shape));
  Tensor t = empty(shape, dtype_of<T>);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

template <typename T>
T* Tensor::data() const {
  check_cpu_access(dtype_of<T>, "data");
  return static_cast<T*>(data_ptr());
}

template <typename T>
T Tensor::item() const {
  check<ShapeError>(numel() == 1, "item", "expected a tensor with one element, got shape {}", shape_str(shape_));
  return to(dtype_of<T>).template to_vector<T>()[0];
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(Device::cpu()).to(dtype_of<T>).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace dtensor
