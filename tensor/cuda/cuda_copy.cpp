#include "tensor/cuda/cuda_copy.hpp"

#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/cuda/strided_walk.hpp"

namespace dtensor::cuda {

static_assert(uint8_t(DType::I8) == uint8_t(kernels::ElemType::I8) &&
                  uint8_t(DType::BF16) == uint8_t(kernels::ElemType::BF16),
              "kernels::ElemType must list the dtypes in DType's order");

namespace {

bool plain_bytes(const Tensor& dst, const Tensor& src) {
  return dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous();
}

// Both on one device.
void copy_on_device(const Tensor& dst, const Tensor& src) {
  const int device = dst.device().index;
  DeviceGuard guard(device);
  cudaStream_t stream = current_stream(device);
  if (plain_bytes(dst, src)) {
    cuda_check(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync", "{} bytes on {}", dst.nbytes(), dst.device());
    return;
  }
  auto walk = make_walk<2>(dst.shape(), {dst.strides(), src.strides()}, "copy_from");
  kernels::copy_strided(dst.data_ptr(), elem_type(dst.dtype()), src.data_ptr(), elem_type(src.dtype()), walk,
                        dst.numel(), stream);
  check_launch("copy_strided");
}

// src as a contiguous tensor of dst's dtype, on src's own device (src itself when it already is).
Tensor packed_like_dst(const Tensor& dst, const Tensor& src) {
  if (src.dtype() == dst.dtype() && src.is_contiguous()) return src;
  Tensor packed = Tensor::empty(dst.shape(), dst.dtype(), src.device());
  packed.copy_from(src);
  return packed;
}

}  // namespace

void copy_tensor(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  if (dst.device() == src.device()) return copy_on_device(dst, src);
  // Across devices: pack on the source side, move the bytes, unpack on the destination side.
  Tensor packed = packed_like_dst(dst, src);
  Tensor landing = dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  copy_bytes(landing.data_ptr(), landing.device(), packed.data_ptr(), packed.device(), landing.nbytes());
  if (!landing.shares_storage(dst)) dst.copy_from(landing);
}

void fill_tensor(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  const int device = dst.device().index;
  DeviceGuard guard(device);
  auto walk = make_walk<1>(dst.shape(), {dst.strides()}, "fill");
  kernels::fill_strided(dst.data_ptr(), elem_type(dst.dtype()), value, walk, dst.numel(), current_stream(device));
  check_launch("fill_strided");
}

}  // namespace dtensor::cuda
