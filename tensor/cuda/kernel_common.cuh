// Shared pieces of the .cu files: element types, conversions, strided offsets, grid sizes.
#pragma once

#include "tensor/cuda/launch.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace dtensor::cuda::kernels {

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) with T the device type of `type`.
template <typename Fn>
void visit_type(ElemType type, Fn&& fn) {
  switch (type) {
    case ElemType::F32:
      return fn(TypeTag<float>{});
    case ElemType::F64:
      return fn(TypeTag<double>{});
    case ElemType::BF16:
      return fn(TypeTag<__nv_bfloat16>{});
    case ElemType::F16:
      return fn(TypeTag<__half>{});
    case ElemType::I32:
      return fn(TypeTag<int32_t>{});
    case ElemType::I64:
      return fn(TypeTag<int64_t>{});
    case ElemType::U8:
      return fn(TypeTag<uint8_t>{});
    case ElemType::I8:
      return fn(TypeTag<int8_t>{});
  }
}

// Floating types only (the callers checked the dtype).
template <typename Fn>
void visit_floating(ElemType type, Fn&& fn) {
  switch (type) {
    case ElemType::F32:
      return fn(TypeTag<float>{});
    case ElemType::F64:
      return fn(TypeTag<double>{});
    case ElemType::BF16:
      return fn(TypeTag<__nv_bfloat16>{});
    case ElemType::F16:
      return fn(TypeTag<__half>{});
    default:
      return;
  }
}

// Arithmetic type of T: float for the 16-bit floats (as on the CPU), T otherwise.
template <typename T>
struct ComputeOf {
  using type = T;
};
template <>
struct ComputeOf<__nv_bfloat16> {
  using type = float;
};
template <>
struct ComputeOf<__half> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeOf<T>::type;

template <typename T>
__device__ __forceinline__ compute_t<T> load(const T* p) {
  return static_cast<compute_t<T>>(*p);
}

template <typename T>
__device__ __forceinline__ T to_storage(compute_t<T> v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16_rn(v);
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(v);
  else
    return v;
}

// Any value converted to T's storage, going through T's compute type (as the CPU copy does).
template <typename T, typename V>
__device__ __forceinline__ T convert_to(V v) {
  return to_storage<T>(static_cast<compute_t<T>>(v));
}

// Element offsets of operand k for the linear (row-major) index i of the walk.
template <int N>
__device__ __forceinline__ void offsets_of(const StridedWalk<N>& walk, int64_t i, int64_t (&off)[N]) {
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = walk.ndim - 1; d >= 0; --d) {
    const int64_t size = walk.shape[d];
    const int64_t index = i % size;
    i /= size;
    for (int k = 0; k < N; ++k) off[k] += index * walk.strides[k][d];
  }
}

inline constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, no more.
inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
}

#define DTENSOR_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

}  // namespace dtensor::cuda::kernels
