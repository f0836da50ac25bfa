// Launchers of the quantized-weight kernels (quant_kernels.cu), over raw device pointers; read by
// nvcc and the host compiler alike, so plain types only. quant.cpp checks the arguments.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dtensor::cuda::kernels {

// Same values as dtensor::QuantFormat; the byte layouts are those of tensor/quant/quantized.hpp.
enum class QuantKind : uint8_t { Int8, Q8_0, Q4_0, Q4_1, NF4 };

// A quantized matrix on the device: row r's packed bytes at data + r * row_stride; scales f32
// [rows] (int8) or [rows, cols / 64] (nf4), null for the ggml kinds.
struct QuantRows {
  QuantKind kind;
  const uint8_t* data;
  int64_t row_stride;
  const float* scales;
  int64_t rows, cols;
};

// out [m, rows] = x [m, cols] W^T, all f32 and contiguous, x kept in f32.
void quant_matmul(const QuantRows& w, const float* x, int64_t m, float* out, cudaStream_t stream);

// LLM.int8 for int8 weights: columns with |x| >= threshold in any row are multiplied in f32 with
// the dequantized columns, the rest with x rounded to int8 per row (absmax / 127) in integers.
// outlier (u8 [cols]), xq (i8 [m, cols]) and x_scale (f32 [m]) are scratch space.
void int8_outlier_matmul(const QuantRows& w, const float* x, int64_t m, float threshold, uint8_t* outlier, int8_t* xq,
                         float* x_scale, float* out, cudaStream_t stream);

// out [n, cols] f32 = the rows ids[0, n) of W dequantized; *bad_id is set to an id outside
// [0, rows) (the caller zeroes it and reads it back).
void quant_rows(const QuantRows& w, const int64_t* ids, int64_t n, float* out, int64_t* bad_id, cudaStream_t stream);

}  // namespace dtensor::cuda::kernels
