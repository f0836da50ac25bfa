// Ranks that never meet in a call, so that DTENSOR_TIMEOUT must end the job with what each rank
// was doing (tests/check_timeout.sh judges the output). One mode per run:
//   compute   (np 3) ranks 0 and 2 all_reduce while rank 1 computes (sleeps) past the timeout;
//   order     (np 2, no DTENSOR_DEBUG) rank 0 calls all_reduce while rank 1 calls all_gather;
//   recv      (np 2) rank 0 waits for a message rank 1 never sends;
//   subgroup  (np 4) the groups {0, 2} and {1, 3} of a split; rank 2 computes while rank 0 all_reduces.
// A rank with no part in a mode computes too, so that only the timeout ends the job.
#include "collectives/runtime.hpp"

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

using namespace dtensor;

namespace {

void compute_for_a_minute() { std::this_thread::sleep_for(std::chrono::seconds(60)); }

int run(Communicator& world, const std::string& mode) {
  Tensor buffer = Tensor::full({64}, 1.0, DType::F32);
  if (mode == "compute") {
    if (world.rank() == 1) compute_for_a_minute();
    world.all_reduce(buffer);
  } else if (mode == "order") {
    Tensor gathered = Tensor::empty({64 * world.size()}, DType::F32);
    if (world.rank() == 0) world.all_reduce(buffer);
    if (world.rank() == 1) world.all_gather(buffer, gathered);
  } else if (mode == "recv") {
    if (world.rank() != 0) compute_for_a_minute();
    world.recv(buffer.narrow(0, 0, 8), 1);
  } else if (mode == "subgroup") {
    Communicator pair = world.split(world.rank() % 2, world.rank());
    if (world.rank() != 0) compute_for_a_minute();
    pair.all_reduce(buffer);
  } else {
    std::fprintf(stderr, "usage: hang_on_purpose compute|order|recv|subgroup\n");
    return 2;
  }
  std::printf("rank %d: mode %s returned, which it must not\n", world.rank(), mode.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  return run_main(argc, argv, [&](Communicator& world) { return run(world, mode); });
}
