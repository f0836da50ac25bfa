// Elementwise kernels: broadcast binary ops and comparisons, where, masked_fill, unary math.
// Arithmetic follows the CPU kernels: 16-bit floats compute in float; NaN propagates through
// maximum/minimum; integer division truncates toward zero.
#include "tensor/cuda/kernel_common.cuh"

#include <cmath>

namespace dtensor::cuda::kernels {

namespace {

template <typename C>
__device__ __forceinline__ bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>)
    return v != v;
  else
    return false;
}

template <typename C>
__device__ __forceinline__ C apply_binary(BinaryOp op, C x, C y) {
  switch (op) {
    case BinaryOp::Add:
      return x + y;
    case BinaryOp::Sub:
      return x - y;
    case BinaryOp::Mul:
      return x * y;
    case BinaryOp::Div:
      return x / y;
    case BinaryOp::Max:
      return is_nan(x) || x > y ? x : y;
    case BinaryOp::Min:
      return is_nan(x) || x < y ? x : y;
    default:
      return C(0);
  }
}

template <typename C>
__device__ __forceinline__ uint8_t apply_compare(BinaryOp op, C x, C y) {
  switch (op) {
    case BinaryOp::Eq:
      return x == y;
    case BinaryOp::Ne:
      return x != y;
    case BinaryOp::Lt:
      return x < y;
    case BinaryOp::Le:
      return x <= y;
    case BinaryOp::Gt:
      return x > y;
    case BinaryOp::Ge:
      return x >= y;
    default:
      return 0;
  }
}

template <typename T>
__global__ void binary_kernel(BinaryOp op, const T* a, const T* b, T* out, StridedWalk<2> walk, int64_t numel) {
  DTENSOR_GRID_STRIDE(i, numel) {
    int64_t off[2];
    offsets_of(walk, i, off);
    out[i] = to_storage<T>(apply_binary(op, load(a + off[0]), load(b + off[1])));
  }
}

template <typename T>
__global__ void compare_kernel(BinaryOp op, const T* a, const T* b, uint8_t* out, StridedWalk<2> walk, int64_t numel) {
  DTENSOR_GRID_STRIDE(i, numel) {
    int64_t off[2];
    offsets_of(walk, i, off);
    out[i] = apply_compare(op, load(a + off[0]), load(b + off[1]));
  }
}

template <typename T>
__global__ void where_kernel(const uint8_t* cond, const T* a, const T* b, T* out, StridedWalk<3> walk, int64_t numel) {
  DTENSOR_GRID_STRIDE(i, numel) {
    int64_t off[3];
    offsets_of(walk, i, off);
    out[i] = cond[off[0]] != 0 ? a[off[1]] : b[off[2]];
  }
}

template <typename T>
__global__ void masked_fill_kernel(const T* a, const uint8_t* mask, T value, T* out, StridedWalk<2> walk,
                                   int64_t numel) {
  DTENSOR_GRID_STRIDE(i, numel) {
    int64_t off[2];
    offsets_of(walk, i, off);
    out[i] = mask[off[1]] != 0 ? value : a[off[0]];
  }
}

template <typename C>
__device__ __forceinline__ bool is_negative(C x) {
  if constexpr (std::is_unsigned_v<C>)
    return false;
  else
    return x < C(0);
}

template <typename C>
__device__ __forceinline__ C apply_unary(UnaryOp op, C x, C scalar) {
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case UnaryOp::Exp:
        return exp(x);
      case UnaryOp::Log:
        return log(x);
      case UnaryOp::Sqrt:
        return sqrt(x);
      case UnaryOp::Rsqrt:
        return C(1) / sqrt(x);
      case UnaryOp::Tanh:
        return tanh(x);
      case UnaryOp::Silu:
        return x / (C(1) + exp(-x));
      case UnaryOp::Gelu:
        return C(0.5) * x * (C(1) + erf(x * C(0.70710678118654752440)));
      default:
        break;
    }
  }
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Abs:
      return is_negative(x) ? C(-x) : x;
    case UnaryOp::Relu:
      return is_negative(x) ? C(0) : x;  // NaN stays NaN, as torch.relu
    case UnaryOp::AddScalar:
      return x + scalar;
    case UnaryOp::MulScalar:
      return x * scalar;
    default:
      return x;
  }
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, const T* in, T* out, int64_t n, compute_t<T> scalar) {
  DTENSOR_GRID_STRIDE(i, n) { out[i] = to_storage<T>(apply_unary(op, load(in + i), scalar)); }
}

}  // namespace

void binary(BinaryOp op, const void* a, const void* b, void* out, ElemType type, const StridedWalk<2>& walk,
            int64_t numel, cudaStream_t stream) {
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (is_comparison(op)) {
      compare_kernel<<<grid_for(numel), kThreads, 0, stream>>>(op, static_cast<const T*>(a), static_cast<const T*>(b),
                                                               static_cast<uint8_t*>(out), walk, numel);
    } else {
      binary_kernel<<<grid_for(numel), kThreads, 0, stream>>>(op, static_cast<const T*>(a), static_cast<const T*>(b),
                                                              static_cast<T*>(out), walk, numel);
    }
  });
}

void where(const void* cond, const void* a, const void* b, void* out, ElemType type, const StridedWalk<3>& walk,
           int64_t numel, cudaStream_t stream) {
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    where_kernel<<<grid_for(numel), kThreads, 0, stream>>>(static_cast<const uint8_t*>(cond), static_cast<const T*>(a),
                                                           static_cast<const T*>(b), static_cast<T*>(out), walk, numel);
  });
}

void masked_fill(const void* a, const void* mask, double value, void* out, ElemType type, const StridedWalk<2>& walk,
                 int64_t numel, cudaStream_t stream) {
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = T(static_cast<compute_t<T>>(value));
    masked_fill_kernel<<<grid_for(numel), kThreads, 0, stream>>>(
        static_cast<const T*>(a), static_cast<const uint8_t*>(mask), v, static_cast<T*>(out), walk, numel);
  });
}

void unary(UnaryOp op, const void* in, void* out, ElemType type, int64_t n, double scalar, cudaStream_t stream) {
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_kernel<<<grid_for(n), kThreads, 0, stream>>>(op, static_cast<const T*>(in), static_cast<T*>(out), n,
                                                       static_cast<compute_t<T>>(scalar));
  });
}

}  // namespace dtensor::cuda::kernels
