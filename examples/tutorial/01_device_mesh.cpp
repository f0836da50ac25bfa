// Step 1 of docs/tutorial.md: a DeviceMesh arranges the ranks of a job in a named N-D grid.
//
//   scripts/mpirun.sh -np 4 build/examples/tutorial/01_device_mesh
#include "tutorial.hpp"

#include "collectives/runtime.hpp"
#include "mesh/device_mesh.hpp"

using namespace dtensor;
using tutorial::print_each_rank;

int main(int argc, char** argv) {
  return run_main(argc, argv, [](Communicator& world) {
    const bool root = world.rank() == 0;
    if (world.size() != 4) {
      if (root) fmt::print(stderr, "run this step with 4 ranks (mpirun -np 4)\n");
      return 2;
    }

    // A 1-D mesh: all four ranks in a row, one dim called "tp".
    DeviceMesh line = DeviceMesh::from_world({4}, {"tp"});
    if (root) fmt::print("{}\n", line.to_string());

    // A 2-D mesh: the same ranks as a 2 x 2 grid, laid out row-major. Each rank has a coordinate.
    DeviceMesh mesh = DeviceMesh::from_world({2, 2}, {"dp", "tp"});
    if (root) fmt::print("{}\n", mesh.to_string());
    print_each_rank(world, fmt::format("coordinate (dp, tp) = ({})", fmt::join(mesh.coordinate(), ", ")));

    // A sub-mesh is the row or column of the grid that contains this rank. mesh["tp"] is the ranks
    // that share my dp coordinate; mesh["dp"] those that share my tp coordinate.
    DeviceMesh tp = mesh["tp"], dp = mesh["dp"];
    print_each_rank(world, fmt::format("my tp group is ranks {}, my dp group is ranks {}", tp.ranks(), dp.ranks()));

    // Each mesh dim has its own communicator: a collective over "tp" involves only my row.
    Tensor x = Tensor::full({1}, double(world.rank()), DType::F32);
    mesh.comm("tp").all_reduce(x);
    print_each_rank(world, fmt::format("sum of the ranks in my tp group = {}", x.item<float>()));

    // flatten merges adjacent dims back into one (here: all four ranks again).
    DeviceMesh flat = mesh.flatten({"dp", "tp"}, "dp_tp");
    if (root) fmt::print("{}\n", flat.to_string());

    // A mesh over some ranks only: the others are not members and must not use it.
    DeviceMesh evens = DeviceMesh::from_ranks(world, {0, 2}, {2}, {"even"});
    print_each_rank(world,
                    evens.is_member() ? fmt::format("in {}", evens.to_string()) : "not in the mesh of even ranks");
    return 0;
  });
}
