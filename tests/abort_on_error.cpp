// One rank fails while the others wait inside a collective; the whole job must end promptly with
// that rank's message (tests/check_abort.sh judges). Run with -np 3 and one mode:
//   run_main    rank 1 starts a pipelined all_reduce, then a bad call throws a ValueError out of
//               run_main's body while ranks 0 and 2 wait inside that all_reduce;
//   terminate   rank 1 lets an exception escape main (no run_main) while the others wait in a
//               barrier: the terminate handler installed by init() must end the job.
#include "collectives/runtime.hpp"

#include <cstdio>
#include <stdexcept>
#include <string>

using namespace dtensor;

namespace {

constexpr int kFailingRank = 1;

int fail_mid_all_reduce(Communicator& comm) {
  Tensor buffer = Tensor::full({int64_t(4) << 20}, 1.0, DType::BF16);  // pipelined, several steps
  if (comm.rank() != kFailingRank) {
    comm.all_reduce(buffer);  // never completes: rank 1 stops half way
    std::printf("rank %d: all_reduce returned, which it must not\n", comm.rank());
    return 0;
  }
  Work pending = comm.all_reduce(buffer, ReduceOp::Sum, CommMode::Async);
  comm.broadcast(buffer, comm.size() + 5);  // throws ValueError: root out of range
  pending.wait();
  return 0;
}

void escape_main(const Communicator& comm) {
  if (comm.rank() == kFailingRank) throw std::runtime_error("rank 1 gave up before the barrier");
  Communicator(comm).barrier();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "run_main") return run_main(argc, argv, fail_mid_all_reduce);
  if (mode == "terminate") {
    escape_main(init(&argc, &argv));
    return 0;
  }
  std::fprintf(stderr, "usage: abort_on_error run_main|terminate\n");
  return 2;
}
