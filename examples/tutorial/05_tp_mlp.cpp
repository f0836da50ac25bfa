// Step 5 of docs/tutorial.md: a tensor-parallel MLP by hand, y = relu(x W1^T) W2^T, the way
// Megatron-LM splits it: W1 by output features (colwise), W2 by input features (rowwise), so the
// only communication is one all_reduce at the end. Runs on any number of ranks.
//
//   scripts/mpirun.sh -np 4 build/examples/tutorial/05_tp_mlp
#include "tutorial.hpp"

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/ops.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

using namespace dtensor;
using tutorial::print_each_rank;

namespace {

Tensor random_normal(const Shape& shape, uint64_t seed) {
  return random(shape, DType::F32, {.seed = seed, .distribution = Distribution::Normal, .a = 0.0, .b = 0.5});
}

std::string layout(const DTensor& t) {
  return fmt::format("{} {} (local {})", placements_str(t.placements()), shape_str(t.shape()),
                     shape_str(t.to_local().shape()));
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [](Communicator& world) {
    const bool root = world.rank() == 0;
    DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
    const int64_t tokens = 3, hidden = 8, ffn = 14;  // 14 features over 4 ranks: 4, 4, 4, 2

    // The same seeds give the same tensors on every rank; rank 0's copies are the ones scattered.
    const Tensor x = random_normal({tokens, hidden}, 1);
    const Tensor w1 = random_normal({ffn, hidden}, 2), w2 = random_normal({hidden, ffn}, 3);
    DTensor dx = DTensor::distribute(x, mesh, {Replicate()});
    DTensor dw1 = DTensor::distribute(w1, mesh, {Shard(0)});  // colwise: rows of W1 = output features
    DTensor dw2 = DTensor::distribute(w2, mesh, {Shard(1)});  // rowwise: columns of W2 = input features
    print_each_rank(world, fmt::format("W1 {}, W2 {}", layout(dw1), layout(dw2)));

    // 1) With DTensor ops: sharding propagation does the bookkeeping.
    CommRecorder recorder;
    DTensor h = relu(linear(dx, dw1));                // R x S(0)^T -> S(1): each rank has its own features
    DTensor partial = linear(h, dw2);                 // S(1) x S(1)^T -> P(sum): each rank a summand of y
    DTensor y = partial.redistribute({Replicate()});  // the one all_reduce
    if (root) {
      fmt::print("h = relu(linear(x, W1)): {}\n", layout(h));
      fmt::print("linear(h, W2):           {}\n", layout(partial));
      fmt::print("redistribute to R:       {}\n", layout(y));
      fmt::print("collectives: {}", recorder.calls().empty() ? "none (one rank)\n" : recorder.summary());
    }

    // 2) The same with plain local tensors: what the DTensor ops did underneath.
    Tensor my_h = relu(linear(x, dw1.to_local()));  // my block of W1's rows
    Tensor my_y = linear(my_h, dw2.to_local());     // my block of W2's columns: a partial sum
    mesh.comm("tp").all_reduce(my_y);               // sum the partial results

    // 3) The single-process reference, on the whole weights.
    const Tensor reference = linear(relu(linear(x, w1)), w2);
    const double diff = std::max(max_abs_diff(y.to_local(), reference), max_abs_diff(my_y, reference));
    const bool same = diff < 1e-5;
    if (root) fmt::print("same as the single-process MLP (max |difference| < 1e-5): {}\n", same ? "yes" : "NO");
    return same ? 0 : 1;
  });
}
