// Step 2 of docs/tutorial.md: placements say how one logical tensor is laid out over a mesh.
//
//   scripts/mpirun.sh -np 4 build/examples/tutorial/02_placements
#include "tutorial.hpp"

#include "collectives/runtime.hpp"
#include "dtensor/dtensor.hpp"

using namespace dtensor;
using tutorial::print_each_rank, tutorial::values;

int main(int argc, char** argv) {
  return run_main(argc, argv, [](Communicator& world) {
    const bool root = world.rank() == 0;
    if (world.size() != 4) {
      if (root) fmt::print(stderr, "run this step with 4 ranks (mpirun -np 4)\n");
      return 2;
    }
    DeviceMesh mesh = DeviceMesh::from_world({4}, {"tp"});

    // The logical tensor, 5 x 3, exists on rank 0 only; distribute scatters it (no other rank
    // ever holds the whole). 5 rows over 4 ranks split as torch.chunk does: 2, 2, 1, 0.
    Tensor full = root ? Tensor::arange({5, 3}, DType::F32) : Tensor();
    DTensor rows = DTensor::distribute(full, mesh, {Shard(0)});
    if (root) fmt::print("Shard(0): global shape {}\n{}", shape_str(rows.shape()), visualize_sharding(rows));
    Tensor mine = rows.to_local();
    print_each_rank(world, fmt::format("local {} = {}", shape_str(mine.shape()), values(mine)));

    // Shard(1) splits the columns instead; Replicate gives every rank the whole tensor.
    DTensor cols = DTensor::distribute(full, mesh, {Shard(1)});
    print_each_rank(world,
                    fmt::format("Shard(1) local {} = {}", shape_str(cols.to_local().shape()), values(cols.to_local())));
    DTensor everywhere = DTensor::distribute(full, mesh, {Replicate()});
    if (root) fmt::print("Replicate: every rank holds {}\n", shape_str(everywhere.to_local().shape()));

    // Partial(sum): every rank holds a full-size summand; the logical value is their sum. Here
    // rank r contributes r + 1 everywhere, so the tensor is 1 + 2 + 3 + 4 = 10 everywhere.
    Tensor summand = Tensor::full({2, 2}, double(world.rank() + 1), DType::F32);
    DTensor partial = DTensor::from_local(summand, mesh, {Partial()});
    Tensor reduced = partial.full_tensor();  // the reduction happens here (an all_reduce)
    if (root) fmt::print("Partial(sum) of {} summands: full_tensor() = {}\n", mesh.size(), values(reduced));

    // from_local wraps blocks a program computed itself. Passing check = true lets the ranks
    // agree on the global shape, uneven pieces included (here 2 + 2 + 1 + 0 rows).
    DTensor again = DTensor::from_local(mine, mesh, {Shard(0)}, std::nullopt, /*check=*/true);
    if (root) fmt::print("from_local with check: global shape {}\n", shape_str(again.shape()));

    // On a 2-D mesh there is one placement per mesh dim: rows over "dp", columns over "tp".
    DeviceMesh grid = DeviceMesh::from_world({2, 2}, {"dp", "tp"});
    DTensor tiles = DTensor::distribute(full, grid, {Shard(0), Shard(1)});
    if (root) fmt::print("(Shard(0), Shard(1)) on a 2 x 2 mesh:\n{}", visualize_sharding(tiles));
    print_each_rank(
        world, fmt::format("coordinate ({}) local {}", fmt::join(grid.coordinate(), ", "), values(tiles.to_local())));

    // full_tensor() puts the whole logical tensor back on every rank.
    Tensor whole = tiles.full_tensor();
    if (root) fmt::print("full_tensor() = {}\n", values(whole));
    return 0;
  });
}
