// Where the ops of ops.hpp hand CUDA tensors to the CUDA kernels (internal; not installed).
//
// Every public op starts with one line
//   DTENSOR_DISPATCH_CUDA(a, binary(kernels::BinaryOp::Add, a, b, "add"));
// which, in a build with CUDA, returns cuda::<call> when `a` lives on a CUDA device; the rest
// of the function is the CPU kernel. In a CPU-only build the line is empty and the CPU kernel's
// own device check raises DeviceError. The CUDA side checks that the other arguments are on
// the same device.
#pragma once

#include "tensor/tensor.hpp"

#if DTENSOR_CUDA
#include "tensor/cuda/cuda_ops.hpp"

#define DTENSOR_DISPATCH_CUDA(tensor, call)                                                \
  do {                                                                                     \
    if ((tensor).defined() && (tensor).device().type == ::dtensor::DeviceType::CUDA) {     \
      using namespace ::dtensor::cuda;                                                     \
      return ::dtensor::cuda::call;                                                        \
    }                                                                                      \
  } while (false)
#else
#define DTENSOR_DISPATCH_CUDA(tensor, call) static_cast<void>(0)
#endif
