// CUDA runtime and cuBLAS status codes turned into DeviceError naming the failed call:
//   "[cudaMalloc] cudaErrorMemoryAllocation: out of memory (1073741824 bytes on cuda:0) [rank 0]"
// Internal to the CUDA build (host compiler only).
#pragma once

#include "tensor/error.hpp"

#include <cublas_api.h>
#include <cuda_runtime_api.h>

namespace dtensor::cuda {

inline void cuda_check(cudaError_t status, const char* call) {
  if (status != cudaSuccess) {
    fail<DeviceError>(call, "{}: {}", cudaGetErrorName(status), cudaGetErrorString(status));
  }
}

// The same with context the caller adds (sizes, devices).
template <typename... Args>
void cuda_check(cudaError_t status, const char* call, fmt::format_string<Args...> context, Args&&... args) {
  if (status != cudaSuccess) {
    fail<DeviceError>(call, "{}: {} ({})", cudaGetErrorName(status), cudaGetErrorString(status),
                      fmt::format(context, std::forward<Args>(args)...));
  }
}

inline void cublas_check(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    fail<DeviceError>(call, "{}: {}", cublasGetStatusName(status), cublasGetStatusString(status));
  }
}

// A kernel launch reports bad configurations only through cudaGetLastError.
inline void check_launch(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

}  // namespace dtensor::cuda
