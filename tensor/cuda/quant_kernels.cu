// Quantized weights on CUDA: one warp per output row reads the row's packed blocks once, each lane
// dequantizing whole 32-element chunks into registers and multiplying them with every row of x
// (up to 8 at a time); the lanes' sums meet in a warp reduction. No dequantized copy of the
// matrix is made.
#include "tensor/cuda/kernel_common.cuh"
#include "tensor/cuda/quant_launch.hpp"
#include "tensor/quant/nf4_codes.hpp"

namespace dtensor::cuda::kernels {

namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kRowsOfX = 8;

__constant__ float kNF4[16] = {DTENSOR_NF4_CODES};

__device__ __forceinline__ float f16_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(uint16_t(p[0] | (uint16_t(p[1]) << 8))));
}

// The 32 values of chunk c of row r (int8 rows past cols read as 0).
__device__ void decode_chunk(const QuantRows& w, int64_t r, int64_t c, float (&v)[32]) {
  const uint8_t* row = w.data + r * w.row_stride;
  switch (w.kind) {
    case QuantKind::Int8: {
      const float scale = w.scales[r];
      for (int j = 0; j < 32; ++j) {
        const int64_t col = c * 32 + j;
        v[j] = col < w.cols ? float(int8_t(row[col])) * scale : 0.0f;
      }
      return;
    }
    case QuantKind::Q8_0: {
      const uint8_t* block = row + c * 34;
      const float d = f16_at(block);
      for (int j = 0; j < 32; ++j) v[j] = float(int8_t(block[2 + j])) * d;
      return;
    }
    case QuantKind::Q4_0: {
      const uint8_t* block = row + c * 18;
      const float d = f16_at(block);
      for (int j = 0; j < 16; ++j) {
        v[j] = float((block[2 + j] & 15) - 8) * d;
        v[j + 16] = float((block[2 + j] >> 4) - 8) * d;
      }
      return;
    }
    case QuantKind::Q4_1: {
      const uint8_t* block = row + c * 20;
      const float d = f16_at(block), m = f16_at(block + 2);
      for (int j = 0; j < 16; ++j) {
        v[j] = __fadd_rn(__fmul_rn(float(block[4 + j] & 15), d), m);
        v[j + 16] = __fadd_rn(__fmul_rn(float(block[4 + j] >> 4), d), m);
      }
      return;
    }
    case QuantKind::NF4: {
      const uint8_t* bytes = row + c * 16;
      const float absmax = w.scales[r * (w.cols / 64) + c / 2];
      for (int j = 0; j < 16; ++j) {
        v[2 * j] = kNF4[bytes[j] >> 4] * absmax;
        v[2 * j + 1] = kNF4[bytes[j] & 15] * absmax;
      }
      return;
    }
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void quant_matmul_kernel(QuantRows w, const float* x, int64_t m, float* out) {
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= w.rows) return;
  const int64_t chunks = (w.cols + 31) / 32;
  for (int64_t i0 = 0; i0 < m; i0 += kRowsOfX) {
    const int n = int(m - i0 < kRowsOfX ? m - i0 : kRowsOfX);
    float acc[kRowsOfX] = {};
    for (int64_t c = lane; c < chunks; c += kWarp) {
      float v[32];
      decode_chunk(w, r, c, v);
      for (int i = 0; i < n; ++i) {
        const float* xc = x + (i0 + i) * w.cols + c * 32;
        const int valid = int(w.cols - c * 32 < 32 ? w.cols - c * 32 : 32);
        for (int j = 0; j < valid; ++j) acc[i] += v[j] * xc[j];
      }
    }
    for (int i = 0; i < n; ++i) {
      const float total = warp_sum(acc[i]);
      if (lane == 0) out[(i0 + i) * w.rows + r] = total;
    }
  }
}

__global__ void outlier_columns_kernel(const float* x, int64_t m, int64_t cols, float threshold, uint8_t* outlier) {
  DTENSOR_GRID_STRIDE(c, cols) {
    uint8_t any = 0;
    for (int64_t i = 0; i < m; ++i) any |= fabsf(x[i * cols + c]) >= threshold;
    outlier[c] = any;
  }
}

// One block per row of x: absmax over the columns that are not outliers, then round.
__global__ void quantize_x_kernel(const float* x, int64_t cols, const uint8_t* outlier, int8_t* xq, float* x_scale) {
  __shared__ float partial[kThreads];
  const float* row = x + int64_t(blockIdx.x) * cols;
  float amax = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) amax = outlier[c] ? amax : fmaxf(amax, fabsf(row[c]));
  partial[threadIdx.x] = amax;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] = fmaxf(partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  amax = partial[0];
  const float inv = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    xq[int64_t(blockIdx.x) * cols + c] = outlier[c] ? 0 : int8_t(nearbyintf(__fmul_rn(row[c], inv)));
  }
  if (threadIdx.x == 0) x_scale[blockIdx.x] = amax / 127.0f;
}

__global__ void int8_outlier_kernel(QuantRows w, const float* x, int64_t m, const uint8_t* outlier, const int8_t* xq,
                                    const float* x_scale, float* out) {
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= w.rows) return;
  const int8_t* wq = reinterpret_cast<const int8_t*>(w.data + r * w.row_stride);
  for (int64_t i = 0; i < m; ++i) {
    int32_t integer = 0;
    float outliers = 0.0f;
    for (int64_t c = lane; c < w.cols; c += kWarp) {
      if (outlier[c]) {
        outliers += x[i * w.cols + c] * float(wq[c]);
      } else {
        integer += int32_t(xq[i * w.cols + c]) * int32_t(wq[c]);
      }
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) integer += __shfl_down_sync(0xffffffffu, integer, offset);
    outliers = warp_sum(outliers);
    if (lane == 0) out[i * w.rows + r] = (float(integer) * x_scale[i] + outliers) * w.scales[r];
  }
}

__global__ void quant_rows_kernel(QuantRows w, const int64_t* ids, int64_t n, float* out, int64_t* bad_id) {
  const int64_t chunks = (w.cols + 31) / 32;
  DTENSOR_GRID_STRIDE(t, n * chunks) {
    const int64_t k = t / chunks, c = t % chunks, id = ids[k];
    if (id < 0 || id >= w.rows) {
      *bad_id = id;
      continue;
    }
    float v[32];
    decode_chunk(w, id, c, v);
    const int valid = int(w.cols - c * 32 < 32 ? w.cols - c * 32 : 32);
    for (int j = 0; j < valid; ++j) out[k * w.cols + c * 32 + j] = v[j];
  }
}

unsigned row_blocks(int64_t rows) { return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void quant_matmul(const QuantRows& w, const float* x, int64_t m, float* out, cudaStream_t stream) {
  quant_matmul_kernel<<<row_blocks(w.rows), kWarpsPerBlock * kWarp, 0, stream>>>(w, x, m, out);
}

void int8_outlier_matmul(const QuantRows& w, const float* x, int64_t m, float threshold, uint8_t* outlier, int8_t* xq,
                         float* x_scale, float* out, cudaStream_t stream) {
  outlier_columns_kernel<<<grid_for(w.cols), kThreads, 0, stream>>>(x, m, w.cols, threshold, outlier);
  quantize_x_kernel<<<unsigned(m), kThreads, 0, stream>>>(x, w.cols, outlier, xq, x_scale);
  int8_outlier_kernel<<<row_blocks(w.rows), kWarpsPerBlock * kWarp, 0, stream>>>(w, x, m, outlier, xq, x_scale, out);
}

void quant_rows(const QuantRows& w, const int64_t* ids, int64_t n, float* out, int64_t* bad_id, cudaStream_t stream) {
  quant_rows_kernel<<<grid_for(n * ((w.cols + 31) / 32)), kThreads, 0, stream>>>(w, ids, n, out, bad_id);
}

}  // namespace dtensor::cuda::kernels
