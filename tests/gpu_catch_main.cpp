// Catch2 main for the GPU suites: exits 77 (meson's SKIP) when no CUDA device is visible, so
// machines without a GPU report the suites as skipped, never as passed. Single process; the
// suites that communicate start MPI themselves (collectives/runtime.hpp).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tensor/cuda/device_memory.hpp"

#include <cstdio>

int main(int argc, char** argv) {
  if (dtensor::cuda::device_count() == 0) {
    std::printf("no CUDA device visible: skipping the GPU tests\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
