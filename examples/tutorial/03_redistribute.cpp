// Step 3 of docs/tutorial.md: redistribute changes a DTensor's placements; the planner picks the
// collectives, and explain_redistribute shows its plan before anything moves.
//
//   scripts/mpirun.sh -np 4 build/examples/tutorial/03_redistribute
#include "tutorial.hpp"

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/dtensor.hpp"
#include "tensor/ops.hpp"

using namespace dtensor;

namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  for (size_t at = 0, end; (end = text.find('\n', at)) != std::string::npos; at = end + 1)
    lines.push_back(text.substr(at, end - at));
  return lines;
}

// Prints the plan (rank 0), runs it while recording the collectives, and checks that the logical
// tensor did not change.
DTensor move(const DTensor& x, const Placements& target) {
  const bool root = world().rank() == 0;
  if (root) fmt::print("{}", x.explain_redistribute(target));
  CommRecorder recorder;  // records every collective this rank starts while it lives
  DTensor y = x.redistribute(target);
  std::string ran = recorder.summary();  // one line per collective
  if (ran.empty()) ran = "no collective\n";
  if (root) fmt::print("  ran: {}\n", fmt::join(split_lines(ran), "; "));
  check(equal(x.full_tensor(), y.full_tensor()), "tutorial", "the values changed");
  return y;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [](Communicator& world) {
    if (world.size() != 4) {
      if (world.rank() == 0) fmt::print(stderr, "run this step with 4 ranks (mpirun -np 4)\n");
      return 2;
    }
    DeviceMesh mesh = DeviceMesh::from_world({4}, {"tp"});
    Tensor full = world.rank() == 0 ? Tensor::arange({6, 8}, DType::F32) : Tensor();
    DTensor rows = DTensor::distribute(full, mesh, {Shard(0)});

    move(rows, {Replicate()});  // gather the rows: all_gather
    move(rows, {Shard(1)});     // rows to columns: small, so all_gather then keep my columns
    DTensor big =
        DTensor::distribute(world.rank() == 0 ? Tensor::zeros({1024, 1024}, DType::F32) : Tensor(), mesh, {Shard(0)});
    move(big, {Shard(1)});  // large: one all_to_all, each rank sending 3/4 of its block
    DTensor copies = move(rows, {Replicate()});
    move(copies, {Shard(0)});  // Replicate to Shard: every rank keeps its piece, nothing moves

    // Partial(sum) -> Replicate is an all_reduce; Partial(sum) -> Shard a reduce_scatter.
    DTensor partial = DTensor::from_local(Tensor::full({6, 8}, 1.0, DType::F32), mesh, {Partial()});
    move(partial, {Replicate()});
    move(partial, {Shard(0)});

    // An N-D case on a 2 x 2 mesh: both mesh dims split the rows (mesh dim 0 first, then each
    // half again), and we want rows over mesh dim 1 and columns over mesh dim 0. The planner
    // finds an order of per-dim steps that is legal and cheapest.
    DeviceMesh grid = DeviceMesh::from_world({2, 2}, {"dp", "tp"});
    DTensor nested = DTensor::distribute(full, grid, {Shard(0), Shard(0)});
    move(nested, {Shard(1), Shard(0)});
    return 0;
  });
}
