// Helpers of the GPU suites: inputs made on the CPU, the same op run on both devices, the GPU
// result copied back and compared with the CPU kernel's.
#pragma once

#include <catch2/catch.hpp>

#include "tensor/ops.hpp"
#include "tensor/random.hpp"

using namespace dtensor;

inline const Device kGpu = Device::cuda(0);

inline Tensor random_input(const Shape& shape, DType dtype, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  return random(shape, dtype, RandomOptions{seed, Distribution::Uniform, lo, hi});
}

// Tolerances per dtype for results that went through different (but correct) summation orders.
inline double rtol_for(DType dtype) {
  switch (dtype) {
    case DType::BF16:
      return 2e-2;
    case DType::F16:
      return 4e-3;
    case DType::F32:
      return 1e-4;
    default:
      return 1e-10;
  }
}

// The GPU tensor is back on the CPU, same shape and dtype, close to the CPU one.
inline void require_matches(const Tensor& gpu, const Tensor& cpu, double rtol, double atol) {
  REQUIRE(gpu.device() == kGpu);
  REQUIRE(gpu.dtype() == cpu.dtype());
  REQUIRE(gpu.shape() == cpu.shape());
  Tensor back = gpu.to(Device::cpu());
  INFO("max |gpu - cpu| = " << max_abs_diff(back, cpu));
  REQUIRE(allclose(back, cpu, rtol, atol));
}

inline void require_matches(const Tensor& gpu, const Tensor& cpu) {
  const double tol = rtol_for(cpu.dtype());
  require_matches(gpu, cpu, tol, tol);
}
