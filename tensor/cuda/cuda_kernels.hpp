// The CUDA backend's kernel table: what the core's ops call for tensors on a CUDA device
// (tensor/device_kernels.hpp). Registered by the backend library's entry point.
#pragma once

#include "tensor/device_kernels.hpp"

#include <memory>

namespace dtensor::cuda {

std::unique_ptr<DeviceKernels> make_kernels();

}  // namespace dtensor::cuda
