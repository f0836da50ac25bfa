// Catch2 main for GPU suites launched with mpirun (any number of ranks, one GPU is enough):
// exits 77 (meson's SKIP) on every rank when no CUDA device is visible, before MPI starts, so
// machines without a GPU report the suites as skipped. Otherwise as mpi_catch_main.cpp: every
// rank runs the session, failures are summed over ranks, every rank exits with the same code.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "collectives/runtime.hpp"
#include "tensor/cuda/device_memory.hpp"

#include <cstdio>
#include <iostream>
#include <sstream>

int main(int argc, char** argv) {
  if (dtensor::cuda::device_count() == 0) {
    std::printf("no CUDA device visible: skipping the GPU tests\n");
    return 77;
  }
  dtensor::Communicator world = dtensor::init(&argc, &argv);
  const int rank = world.rank();

  std::ostringstream captured;
  std::streambuf* original = nullptr;
  if (rank != 0) original = std::cout.rdbuf(captured.rdbuf());

  const int failed = Catch::Session().run(argc, argv);

  if (rank != 0) {
    std::cout.rdbuf(original);
    if (failed > 0) std::cerr << "[rank " << rank << "] " << failed << " failed:\n" << captured.str();
  }
  auto total = dtensor::Tensor::from_vector<int64_t>({failed}, {1});
  world.all_reduce(total, dtensor::ReduceOp::Sum);
  const int64_t failed_everywhere = total.item<int64_t>();
  if (rank == 0 && failed_everywhere != failed) {
    std::cout << "failures on other ranks: " << failed_everywhere - failed << "\n";
  }
  return failed_everywhere == 0 ? 0 : 1;
}
