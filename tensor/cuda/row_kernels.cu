// Kernels over the rows of a contiguous [rows, cols] matrix: reductions, argmax, softmax, the
// causal softmax of attention, rms_norm, layer_norm (one thread block per row), and top-k (one
// thread per row, k small).
// Accumulation is in float for f32 and the 16-bit floats, double for f64, int64 for integers.
#include "tensor/cuda/kernel_common.cuh"

#include <cfloat>
#include <climits>

namespace dtensor::cuda::kernels {

namespace {

template <typename T>
struct AccumulatorOf {
  using type = float;
};
template <>
struct AccumulatorOf<double> {
  using type = double;
};
template <>
struct AccumulatorOf<int32_t> {
  using type = int64_t;
};
template <>
struct AccumulatorOf<int64_t> {
  using type = int64_t;
};
template <>
struct AccumulatorOf<uint8_t> {
  using type = int64_t;
};
template <>
struct AccumulatorOf<int8_t> {
  using type = int64_t;
};
template <typename T>
using acc_t = typename AccumulatorOf<T>::type;

template <typename A>
__device__ __forceinline__ bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>)
    return v != v;
  else
    return false;
}

struct SumOp {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return x + y;
  }
};
// max/min that propagate NaN (as torch.amax / amin).
struct MaxOp {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return is_nan(x) || x > y ? x : y;
  }
};
struct MinOp {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return is_nan(x) || x < y ? x : y;
  }
};

template <typename A>
__device__ A lowest() {
  if constexpr (std::is_same_v<A, float>)
    return -INFINITY;
  else if constexpr (std::is_same_v<A, double>)
    return -double(INFINITY);
  else
    return LLONG_MIN;
}
template <typename A>
__device__ A highest() {
  if constexpr (std::is_same_v<A, float>)
    return INFINITY;
  else if constexpr (std::is_same_v<A, double>)
    return double(INFINITY);
  else
    return LLONG_MAX;
}

// Reduces v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `identity` fills the slots of warps the block does not have.
template <typename A, typename Op>
__device__ A block_reduce(A v, Op op, A identity) {
  __shared__ alignas(8) unsigned char raw[32 * sizeof(double)];
  A* partial = reinterpret_cast<A*>(raw);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? partial[lane] : identity;
    for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  const A result = partial[0];
  __syncthreads();  // partial is reused by the caller's next block_reduce
  return result;
}

template <typename T, typename Op>
__device__ acc_t<T> row_fold(const T* row, int64_t cols, Op op, acc_t<T> init) {
  acc_t<T> v = init;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) v = op(v, acc_t<T>(load(row + c)));
  return block_reduce(v, op, init);
}

template <typename T>
__global__ void reduce_rows_kernel(RowReduce op, const T* in, T* out, int64_t cols) {
  const T* row = in + int64_t(blockIdx.x) * cols;
  using A = acc_t<T>;
  A v;
  switch (op) {
    case RowReduce::Max:
      v = row_fold(row, cols, MaxOp{}, lowest<A>());
      break;
    case RowReduce::Min:
      v = row_fold(row, cols, MinOp{}, highest<A>());
      break;
    default:
      v = row_fold(row, cols, SumOp{}, A(0));
      break;
  }
  if constexpr (std::is_floating_point_v<A>) {   // mean takes floating dtypes only
    if (op == RowReduce::Mean) v = v / A(cols);  // 0 / 0 = NaN for an empty row, as torch
  }
  if (threadIdx.x == 0) out[blockIdx.x] = convert_to<T>(v);
}

template <typename T>
__global__ void argmax_rows_kernel(const T* in, int64_t* out, int64_t cols) {
  const T* row = in + int64_t(blockIdx.x) * cols;
  using A = acc_t<T>;
  // The best (value, index) of this thread, then of the warp, then of the block. A NaN beats
  // everything; equal values keep the lower index.
  A best = A(0);
  int64_t where = -1;  // -1: this thread has seen no element yet
  bool best_nan = false;
  auto better = [](A v, int64_t i, bool v_nan, A b, int64_t bi, bool b_nan) {
    if (bi < 0) return true;
    if (v_nan != b_nan) return v_nan;
    if (!v_nan && v != b) return v > b;
    return i < bi;
  };
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const A v = A(load(row + c));
    if (better(v, c, is_nan(v), best, where, best_nan)) best = v, where = c, best_nan = is_nan(v);
  }
  __shared__ alignas(8) unsigned char raw_v[1024 * sizeof(double)];
  __shared__ int64_t raw_i[1024];
  A* values = reinterpret_cast<A*>(raw_v);
  values[threadIdx.x] = best;
  raw_i[threadIdx.x] = where;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) {
      const A v = values[threadIdx.x + half];
      const int64_t i = raw_i[threadIdx.x + half];
      const A b = values[threadIdx.x];
      const int64_t bi = raw_i[threadIdx.x];
      if (i >= 0 && better(v, i, is_nan(v), b, bi, is_nan(b))) values[threadIdx.x] = v, raw_i[threadIdx.x] = i;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = raw_i[0] < 0 ? 0 : raw_i[0];
}

template <typename T>
__global__ void softmax_rows_kernel(const T* in, T* out, int64_t cols, bool log_form) {
  using A = acc_t<T>;
  const T* row = in + int64_t(blockIdx.x) * cols;
  T* dst = out + int64_t(blockIdx.x) * cols;
  const A max = row_fold(row, cols, MaxOp{}, lowest<A>());
  A sum = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += exp(A(load(row + c)) - max);
  sum = block_reduce(sum, SumOp{}, A(0));
  const A log_sum = log(sum);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const A shifted = A(load(row + c)) - max;
    dst[c] = convert_to<T>(log_form ? shifted - log_sum : exp(shifted) / sum);
  }
}

template <typename T>
__global__ void rms_norm_rows_kernel(const T* in, const T* weight, T* out, int64_t cols, double eps) {
  using A = acc_t<T>;
  const T* row = in + int64_t(blockIdx.x) * cols;
  T* dst = out + int64_t(blockIdx.x) * cols;
  A squares = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const A x = A(load(row + c));
    squares += x * x;
  }
  squares = block_reduce(squares, SumOp{}, A(0));
  const A scale = A(1) / sqrt(squares / A(cols) + A(eps));
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    A y = A(load(row + c)) * scale;
    if (weight != nullptr) y *= A(load(weight + c));
    dst[c] = convert_to<T>(y);
  }
}

template <typename T>
__global__ void layer_norm_rows_kernel(const T* in, const T* weight, const T* bias, T* out, int64_t cols, double eps) {
  using A = acc_t<T>;
  const T* row = in + int64_t(blockIdx.x) * cols;
  T* dst = out + int64_t(blockIdx.x) * cols;
  const A mean = row_fold(row, cols, SumOp{}, A(0)) / A(cols);
  A squares = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const A d = A(load(row + c)) - mean;
    squares += d * d;
  }
  squares = block_reduce(squares, SumOp{}, A(0));
  const A scale = A(1) / sqrt(squares / A(cols) + A(eps));
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    A y = (A(load(row + c)) - mean) * scale;
    if (weight != nullptr) y *= A(load(weight + c));
    if (bias != nullptr) y += A(load(bias + c));
    dst[c] = convert_to<T>(y);
  }
}

// Attention probabilities from scaled scores S (f32, or f64 for f64 outputs), rows `ld` apart:
// row r is query r % queries of its head and sees its first first_visible + r % queries columns;
// the softmax runs over those and the columns after them (up to cols) become 0. `out` may alias
// `scores` when T is S (each thread rewrites only the entries it read).
template <typename S, typename T>
__global__ void causal_softmax_kernel(const S* scores, T* out, int64_t cols, int64_t ld, int64_t queries,
                                      int64_t first_visible) {
  const int64_t row = blockIdx.x;
  const S* src = scores + row * ld;
  T* dst = out + row * ld;
  const int64_t seen = first_visible + row % queries;
  const int64_t visible = seen < cols ? seen : cols;
  const S max = row_fold(src, visible, MaxOp{}, lowest<S>());
  S sum = 0;
  for (int64_t c = threadIdx.x; c < visible; c += blockDim.x) sum += exp(src[c] - max);
  sum = block_reduce(sum, SumOp{}, S(0));
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    dst[c] = convert_to<T>(c < visible ? exp(src[c] - max) / sum : S(0));
  }
}

// One thread per row keeps the k best (value, index) pairs sorted, best first.
template <typename T>
__global__ void topk_rows_kernel(const T* in, T* values, int64_t* indices, int64_t rows, int64_t cols, int k) {
  using A = acc_t<T>;
  DTENSOR_GRID_STRIDE(r, rows) {
    A best_v[kMaxTopK];
    int64_t best_i[kMaxTopK];
    int count = 0;
    const T* row = in + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const A v = A(load(row + c));
      // Position of v among the kept ones: after every kept value >= v (earlier index wins ties).
      int pos = count;
      while (pos > 0 && (v > best_v[pos - 1] || (is_nan(v) && !is_nan(best_v[pos - 1])))) --pos;
      if (pos >= k) continue;
      for (int j = (count < k ? count : k - 1); j > pos; --j) best_v[j] = best_v[j - 1], best_i[j] = best_i[j - 1];
      best_v[pos] = v;
      best_i[pos] = c;
      if (count < k) ++count;
    }
    for (int j = 0; j < k; ++j) {
      values[r * k + j] = convert_to<T>(best_v[j]);
      indices[r * k + j] = best_i[j];
    }
  }
}

// Threads per row block: a multiple of 32 covering the row, at most 1024.
unsigned row_threads(int64_t cols) {
  int64_t t = 32;
  while (t < cols && t < 1024) t *= 2;
  return unsigned(t);
}

}  // namespace

void reduce_rows(RowReduce op, const void* in, void* out, ElemType type, int64_t rows, int64_t cols,
                 cudaStream_t stream) {
  if (rows == 0) return;
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    reduce_rows_kernel<<<unsigned(rows), row_threads(cols), 0, stream>>>(op, static_cast<const T*>(in),
                                                                         static_cast<T*>(out), cols);
  });
}

void argmax_rows(const void* in, int64_t* out, ElemType type, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0) return;
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    argmax_rows_kernel<<<unsigned(rows), row_threads(cols), 0, stream>>>(static_cast<const T*>(in), out, cols);
  });
}

void softmax_rows(const void* in, void* out, ElemType type, int64_t rows, int64_t cols, bool log, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  visit_floating(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_rows_kernel<<<unsigned(rows), row_threads(cols), 0, stream>>>(static_cast<const T*>(in),
                                                                          static_cast<T*>(out), cols, log);
  });
}

void rms_norm_rows(const void* in, const void* weight, void* out, ElemType type, int64_t rows, int64_t cols, double eps,
                   cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  visit_floating(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rms_norm_rows_kernel<<<unsigned(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(in), static_cast<const T*>(weight), static_cast<T*>(out), cols, eps);
  });
}

void layer_norm_rows(const void* in, const void* weight, const void* bias, void* out, ElemType type, int64_t rows,
                     int64_t cols, double eps, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  visit_floating(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_rows_kernel<<<unsigned(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(in), static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(out),
        cols, eps);
  });
}

void causal_softmax_rows(const void* scores, void* out, ElemType type, int64_t rows, int64_t cols, int64_t ld,
                         int64_t queries, int64_t first_visible, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  visit_floating(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    causal_softmax_kernel<<<unsigned(rows), row_threads(cols), 0, stream>>>(
        static_cast<const S*>(scores), static_cast<T*>(out), cols, ld, queries, first_visible);
  });
}

void topk_rows(const void* in, void* values, int64_t* indices, ElemType type, int64_t rows, int64_t cols, int k,
               cudaStream_t stream) {
  if (rows == 0 || k == 0) return;
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    topk_rows_kernel<<<grid_for(rows), kThreads, 0, stream>>>(static_cast<const T*>(in), static_cast<T*>(values),
                                                              indices, rows, cols, k);
  });
}

}  // namespace dtensor::cuda::kernels
