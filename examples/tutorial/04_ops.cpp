// Step 4 of docs/tutorial.md: ops on DTensors propagate sharding. Each op picks the rule whose
// input layouts cost least to reach, redistributes the inputs that need it, runs the local op on
// the local blocks and says how the output is placed.
//
//   scripts/mpirun.sh -np 4 build/examples/tutorial/04_ops
#include "tutorial.hpp"

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/ops.hpp"
#include "tensor/ops.hpp"

using namespace dtensor;

namespace {

// Runs `op` while recording its collectives and prints (rank 0) what the output is and what moved.
// Then checks its value against `expected`, the same op on the whole tensors.
void show(const std::string& what, const Tensor& expected, const std::function<DTensor()>& op) {
  CommRecorder recorder;
  DTensor out = op();
  std::string moved;
  for (const CommRecorder::Call& call : recorder.calls()) moved += fmt::format(" {}", collective_name(call.kind));
  if (world().rank() == 0)
    fmt::print("{:<30} -> {:<16} communication:{}\n", what,
               fmt::format("{} {}", placements_str(out.placements()), shape_str(out.shape())),
               moved.empty() ? " none" : moved);
  check(allclose(out.full_tensor(), expected), "tutorial", "{} differs from the local op", what);
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [](Communicator& world) {
    if (world.size() != 4) {
      if (world.rank() == 0) fmt::print(stderr, "run this step with 4 ranks (mpirun -np 4)\n");
      return 2;
    }
    DeviceMesh mesh = DeviceMesh::from_world({4}, {"tp"});
    // Whole tensors on every rank (the same values everywhere), then laid out in several ways.
    const Tensor x = Tensor::arange({8, 6}, DType::F32), w = Tensor::arange({6, 4}, DType::F32);
    auto place = [&](const Tensor& t, Placement p) { return DTensor::distribute(t, mesh, {p}); };
    DTensor x_rows = place(x, Shard(0)), x_cols = place(x, Shard(1)), x_all = place(x, Replicate());
    DTensor w_rows = place(w, Shard(0)), w_cols = place(w, Shard(1)), w_all = place(w, Replicate());

    // Matmul: the rules of a row-split, a column-split and a contraction-split product.
    show("matmul(x S(0), w R)", matmul(x, w), [&] { return matmul(x_rows, w_all); });
    show("matmul(x R, w S(1))", matmul(x, w), [&] { return matmul(x_all, w_cols); });
    show("matmul(x S(1), w S(0))", matmul(x, w), [&] { return matmul(x_cols, w_rows); });
    // Inputs that match no rule as they are: the cheapest rule is chosen and an input is moved.
    show("matmul(x S(0), w S(0))", matmul(x, w), [&] { return matmul(x_rows, w_rows); });

    // Reductions: over a kept dim the split stays; over a split dim each rank sums its block and
    // the result is Partial, unless asked to reduce it.
    show("sum(x S(0), dim 1)", sum(x, {1}), [&] { return sum(x_rows, {1}); });
    show("sum(x S(0), dim 0)", sum(x, {0}), [&] { return sum(x_rows, {0}); });
    show("sum(x S(0), dim 0, Reduce)", sum(x, {0}), [&] { return sum(x_rows, {0}, false, PartialResult::Reduce); });

    // Elementwise: same layouts need nothing; different layouts move one input.
    show("add(x S(0), x S(0))", add(x, x), [&] { return add(x_rows, x_rows); });
    show("add(x S(0), x S(1))", add(x, x), [&] { return add(x_rows, x_cols); });
    // A Partial stays partial where that is exact (scaling a sum); relu of a sum is not the sum of
    // relus, so the partial value is reduced first: here to a split, which costs less than to R.
    DTensor partial = matmul(x_cols, w_rows);
    show("mul(P(sum), 2)", mul(matmul(x, w), 2.0), [&] { return mul(partial, 2.0); });
    show("relu(P(sum))", relu(matmul(x, w)), [&] { return relu(partial); });

    // To make sure a block of code never communicates behind your back, forbid it.
    try {
      NoImplicitRedistribute strict;
      add(x_rows, x_cols);
    } catch (const ValueError& e) {
      if (world.rank() == 0) fmt::print("NoImplicitRedistribute: {}\n", e.what());
    }
    return 0;
  });
}
