// Catch2 main for GPU suites launched with mpirun (any number of ranks, one GPU is enough):
// exits 77 (meson's SKIP) on every rank when no CUDA device is visible, before MPI starts, so
// machines without a GPU report the suites as skipped. Otherwise the session of
// tests/mpi_session.hpp.
#include "tensor/cuda/device_memory.hpp"
#include "tests/mpi_session.hpp"

#include <cstdio>

int main(int argc, char** argv) {
  if (dtensor::cuda::device_count() == 0) {
    std::printf("no CUDA device visible: skipping the GPU tests\n");
    return 77;
  }
  return dtensor::testing::run_session_on_every_rank(argc, argv);
}
