// quantized_linear and QuantizedMatrix::dequantize_rows for matrices on a CUDA device (the CUDA
// backend's DeviceKernels entries; internal, not installed).
#pragma once

#include "tensor/quant/quantized.hpp"

namespace dtensor::cuda {

// x (f32 or bf16, [..., cols]) and w on the same CUDA device; arguments already checked by
// dtensor::quantized_linear. x stays in f32 for every format (QuantOptions::quantize_activations
// is a CPU speed choice); int8 with outlier_threshold > 0 runs LLM.int8 as on the CPU.
Tensor quantized_linear(const Tensor& x, const QuantizedMatrix& w, const QuantOptions& options, const Tensor& bias);

// ValueError naming an id outside [0, rows).
Tensor quantized_rows(const QuantizedMatrix& w, const Tensor& ids, DType dtype);

}  // namespace dtensor::cuda
