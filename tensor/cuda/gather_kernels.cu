// Row gathers (embedding lookup, index_select along dim 0) and the rotary position embedding.
#include "tensor/cuda/kernel_common.cuh"

namespace dtensor::cuda::kernels {

namespace {

template <typename T, typename Id>
__global__ void gather_rows_kernel(const T* table, int64_t vocab, int64_t width, const Id* ids, int64_t n_ids, T* out,
                                   int64_t* bad_id) {
  DTENSOR_GRID_STRIDE(i, n_ids * width) {
    const int64_t row = i / width;
    const int64_t col = i % width;
    const int64_t id = int64_t(ids[row]);
    if (id < 0 || id >= vocab) {
      out[i] = T(0);
      if (col == 0) *bad_id = id;
    } else {
      out[i] = table[id * width + col];
    }
  }
}

// Each product is rounded to T before the sum, as x * cos + rotate_half(x) * sin rounds in three
// torch ops (and the CPU kernel); __fmul_rn / __dmul_rn keep the compiler from fusing a product
// into the sum, so f32 and f64 match the CPU too.
template <typename C>
__device__ __forceinline__ C product(C a, C b) {
  if constexpr (std::is_same_v<C, double>)
    return __dmul_rn(a, b);
  else
    return __fmul_rn(a, b);
}

template <typename T>
__global__ void rotary_kernel(const T* x, const compute_t<T>* cos, const compute_t<T>* sin, T* out, int64_t rows,
                              int64_t heads, int64_t head_dim) {
  using C = compute_t<T>;
  const int64_t half = head_dim / 2;
  auto rounded = [](C a, C b) {
    const T r = to_storage<T>(product(a, b));
    return load(&r);
  };
  DTENSOR_GRID_STRIDE(i, rows * heads * half) {
    const int64_t j = i % half;
    const int64_t row_head = i / half;
    const int64_t row = row_head / heads;
    const T* src = x + row_head * head_dim;
    T* dst = out + row_head * head_dim;
    const C c = cos[row * half + j];
    const C s = sin[row * half + j];
    const C x1 = load(src + j);
    const C x2 = load(src + j + half);
    dst[j] = to_storage<T>(rounded(x1, c) - rounded(x2, s));
    dst[j + half] = to_storage<T>(rounded(x2, c) + rounded(x1, s));
  }
}

}  // namespace

void gather_rows(const void* table, ElemType type, int64_t vocab, int64_t width, const void* ids, ElemType id_type,
                 int64_t n_ids, void* out, int64_t* bad_id, cudaStream_t stream) {
  if (n_ids * width == 0) return;
  visit_type(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const unsigned grid = grid_for(n_ids * width);
    if (id_type == ElemType::I32) {
      gather_rows_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const T*>(table), vocab, width,
                                                        static_cast<const int32_t*>(ids), n_ids, static_cast<T*>(out),
                                                        bad_id);
    } else {
      gather_rows_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const T*>(table), vocab, width,
                                                        static_cast<const int64_t*>(ids), n_ids, static_cast<T*>(out),
                                                        bad_id);
    }
  });
}

void rotary(const void* x, const void* cos, const void* sin, void* out, ElemType type, int64_t rows, int64_t heads,
            int64_t head_dim, cudaStream_t stream) {
  const int64_t n = rows * heads * (head_dim / 2);
  if (n == 0) return;
  visit_floating(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    rotary_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<const C*>(cos),
                                                        static_cast<const C*>(sin), static_cast<T*>(out), rows, heads,
                                                        head_dim);
  });
}

}  // namespace dtensor::cuda::kernels
