// Catch2 main for tests launched with mpirun: every rank runs the whole session, the failure
// counts are summed over ranks, and every rank exits with the same code. Rank 0 prints its
// report; other ranks print theirs (prefixed with the rank) only when they failed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "collectives/runtime.hpp"

#include <iostream>
#include <sstream>

int main(int argc, char** argv) {
  dtensor::Communicator world = dtensor::init(&argc, &argv);
  const int rank = world.rank();

  std::ostringstream captured;
  std::streambuf* original = nullptr;
  if (rank != 0) original = std::cout.rdbuf(captured.rdbuf());

  Catch::Session session;
  int failed = session.run(argc, argv);

  if (rank != 0) {
    std::cout.rdbuf(original);
    if (failed > 0) std::cerr << "[rank " << rank << "] " << failed << " failed:\n" << captured.str();
  }

  auto total = dtensor::Tensor::from_vector<int64_t>({failed}, {1});
  world.all_reduce(total, dtensor::ReduceOp::Sum);
  int64_t failed_everywhere = total.item<int64_t>();
  if (rank == 0 && failed_everywhere != failed) {
    std::cout << "failures on other ranks: " << failed_everywhere - failed << "\n";
  }
  return failed_everywhere == 0 ? 0 : 1;
}
