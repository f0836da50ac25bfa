// cuBLAS pieces shared by the GEMM ops (gemm.cpp) and attention (attention.cpp); internal to
// the CUDA build.
#pragma once

#include "tensor/dtype.hpp"

#include <cublas_v2.h>

namespace dtensor::cuda::blas {

// The cuBLAS type of a floating dtype (DTypeError naming "gemm" otherwise).
cudaDataType_t cuda_type(DType dtype);
// f64 math for f64, f32 math for the rest (TF32 for f32 when set_allow_tf32(true)).
cublasComputeType_t compute_type(DType dtype);
// The device's cuBLAS handle (made on first use), bound to the device's current stream. The
// caller makes `device` current (DeviceGuard).
cublasHandle_t handle_on_current_stream(int device);

}  // namespace dtensor::cuda::blas
