// Strided copies with dtype conversion, and fills: what contiguous(), clone(), to(dtype),
// copy_from() and fill() run for CUDA tensors.
#include "tensor/cuda/kernel_common.cuh"

namespace dtensor::cuda::kernels {

namespace {

template <typename Dst, typename Src>
__global__ void copy_kernel(Dst* dst, const Src* src, StridedWalk<2> walk, int64_t numel) {
  DTENSOR_GRID_STRIDE(i, numel) {
    int64_t off[2];
    offsets_of(walk, i, off);
    dst[off[0]] = convert_to<Dst>(load(src + off[1]));
  }
}

template <typename T>
__global__ void fill_kernel(T* dst, T value, StridedWalk<1> walk, int64_t numel) {
  DTENSOR_GRID_STRIDE(i, numel) {
    int64_t off[1];
    offsets_of(walk, i, off);
    dst[off[0]] = value;
  }
}

}  // namespace

void copy_strided(void* dst, ElemType dst_type, const void* src, ElemType src_type, const StridedWalk<2>& walk,
                  int64_t numel, cudaStream_t stream) {
  visit_type(dst_type, [&](auto dst_tag) {
    using Dst = typename decltype(dst_tag)::type;
    visit_type(src_type, [&](auto src_tag) {
      using Src = typename decltype(src_tag)::type;
      copy_kernel<<<grid_for(numel), kThreads, 0, stream>>>(static_cast<Dst*>(dst), static_cast<const Src*>(src), walk,
                                                            numel);
    });
  });
}

void fill_strided(void* dst, ElemType type, double value, const StridedWalk<1>& walk, int64_t numel,
                  cudaStream_t stream) {
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // Converted on the host exactly as the CPU fill does: through T's compute type.
    const T v = T(static_cast<compute_t<T>>(value));
    fill_kernel<<<grid_for(numel), kThreads, 0, stream>>>(static_cast<T*>(dst), v, walk, numel);
  });
}

}  // namespace dtensor::cuda::kernels
