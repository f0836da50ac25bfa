// Bad-input rows: DeviceMesh shapes, names, ranks and lookups; placements.
#include "bad_input_rows.hpp"

#include "collectives/runtime.hpp"
#include "dtensor/dtensor.hpp"
#include "placements/sharding.hpp"

using namespace dtensor;

namespace bad_input {

std::vector<Row> mesh_rows() {
  const int w = world().size();
  const Communicator parent = world();
  const DeviceMesh line = DeviceMesh::from_world({w}, {"tp"});
  const DeviceMesh grid = DeviceMesh::from_world({1, w, 1}, {"a", "b", "c"});
  return {
      row<MeshError>("from_world: empty shape", "shape", [] { DeviceMesh::from_world({}); }),
      row<MeshError>("from_world: a dim of size 0", "shape",
                     [w] {
                       DeviceMesh::from_world({w, 0});
                     }),
      row<MeshError>("from_world: a negative dim", "shape", [w] { DeviceMesh::from_world({-w}); }),
      row<MeshError>("from_world: one rank too many", "shape", [w] { DeviceMesh::from_world({w + 1}); }),
      row<MeshError>("from_world: twice the world", "shape",
                     [w] {
                       DeviceMesh::from_world({w, 2});
                     }),
      row<MeshError>("from_world: more names than dims", "names",
                     [w] {
                       DeviceMesh::from_world({w}, {"dp", "tp"});
                     }),
      row<MeshError>("from_world: fewer names than dims", "names",
                     [w] {
                       DeviceMesh::from_world({w, 1}, {"dp"});
                     }),
      row<MeshError>("from_world: an empty name", "names", [w] { DeviceMesh::from_world({w}, {""}); }),
      row<MeshError>("from_world: a name twice", "names",
                     [w] {
                       DeviceMesh::from_world({w, 1}, {"tp", "tp"});
                     }),
      row<MeshError>("from_range: negative first", "first", [=] { DeviceMesh::from_range(parent, -1, {1}); }),
      row<MeshError>("from_range: first past the parent", "first", [=] { DeviceMesh::from_range(parent, w, {1}); }),
      row<MeshError>("from_range: range past the parent", "first", [=] { DeviceMesh::from_range(parent, 0, {w + 1}); }),
      row<MeshError>("from_range: non-member parent", "parent", [] { DeviceMesh::from_range(Communicator(), 0, {1}); }),
      row<MeshError>("from_range: empty shape", "shape", [=] { DeviceMesh::from_range(parent, 0, {}); }),
      row<MeshError>("from_ranks: fewer ranks than the shape", "ranks",
                     [=] { DeviceMesh::from_ranks(parent, {0}, {2}); }),
      row<MeshError>("from_ranks: a rank past the parent", "ranks", [=] { DeviceMesh::from_ranks(parent, {w}, {1}); }),
      row<MeshError>("from_ranks: a negative rank", "ranks", [=] { DeviceMesh::from_ranks(parent, {-1}, {1}); }),
      row<MeshError>("from_ranks: a rank twice", "ranks",
                     [=] {
                       DeviceMesh::from_ranks(parent, {0, 0}, {2});
                     }),
      row<MeshError>("from_ranks: a name twice", "names",
                     [=] {
                       DeviceMesh::from_ranks(parent, {0}, {1, 1}, {"x", "x"});
                     }),
      row<MeshError>("mesh[name]: unknown name", "\"pp\"", [=] { (void)line["pp"]; }),
      row<MeshError>("mesh[names]: no names", "dim name", [=] { (void)line[std::vector<std::string>{}]; }),
      row<MeshError>("mesh[names]: a name twice", "\"b\"",
                     [=] {
                       (void)grid[{"b", "b"}];
                     }),
      row<MeshError>("size(dim): dim past the mesh", "dim 3", [=] { (void)grid.size(3); }),
      row<MeshError>("size(dim): negative dim", "dim -1", [=] { (void)line.size(-1); }),
      row<MeshError>("size(name): unknown name", "\"dp\"", [=] { (void)line.size("dp"); }),
      row<MeshError>("local_rank(name): unknown name", "\"ep\"", [=] { (void)grid.local_rank("ep"); }),
      row<MeshError>("comm(dim): dim past the mesh", "dim 1", [=] { (void)line.comm(1); }),
      row<MeshError>("comm(name): unknown name", "\"cp\"", [=] { (void)line.comm("cp"); }),
      row<MeshError>("rank_at: coordinate of the wrong length", "coordinate",
                     [=] {
                       (void)line.rank_at({0, 0});
                     }),
      row<MeshError>("rank_at: coordinate past the mesh", "coordinate", [=] { (void)line.rank_at({w}); }),
      row<MeshError>("coordinate_of: rank outside the mesh", "rank", [=] { (void)line.coordinate_of(w); }),
      row<MeshError>("flatten: unknown name", "\"z\"",
                     [=] {
                       (void)grid.flatten({"a", "z"}, "ab");
                     }),
      row<MeshError>("flatten: dims not adjacent", "(a, c)",
                     [=] {
                       (void)grid.flatten({"a", "c"}, "ac");
                     }),
      row<MeshError>("flatten: new name taken by another dim", "\"c\"",
                     [=] {
                       (void)grid.flatten({"a", "b"}, "c");
                     }),
      row<MeshError>("flatten: empty new name", "new_name",
                     [=] {
                       (void)grid.flatten({"a", "b"}, "");
                     }),
      row<MeshError>("default mesh: ndim", "mesh is empty", [] { (void)DeviceMesh().ndim(); }),
  };
}

std::vector<Row> placement_rows() {
  const int w = world().size();
  const DeviceMesh line = DeviceMesh::from_world({w});
  const DeviceMesh grid = DeviceMesh::from_world({w, 1});
  const Tensor block = Tensor::zeros({2, 3}, DType::F32);
  const Tensor ints = Tensor::zeros({2, 3}, DType::I32);
  return {
      row<ValueError>("from_local: no placements", "placements", [=] { DTensor::from_local(block, line, {}); }),
      row<ValueError>("from_local: a placement too many", "placements",
                      [=] {
                        DTensor::from_local(block, line, {Replicate(), Replicate()});
                      }),
      row<ValueError>("from_local: one placement for a 2-D mesh", "placements",
                      [=] { DTensor::from_local(block, grid, {Shard(0)}); }),
      row<ShapeError>("from_local: Shard dim past the tensor", "placements",
                      [=] { DTensor::from_local(block, line, {Shard(2)}); }),
      row<ShapeError>("from_local: negative Shard dim past the tensor", "placements",
                      [=] { DTensor::from_local(block, line, {Shard(-3)}); }),
      row<ShapeError>("from_local: huge Shard dim", "placements",
                      [=] { DTensor::from_local(block, line, {Shard(int64_t(1) << 40)}); }),
      row<DTypeError>("from_local: P(avg) of integers", "placements",
                      [=] { DTensor::from_local(ints, line, {Partial(ReduceOp::Avg)}); }),
      row<ValueError>("from_local: P(prod)", "placements",
                      [=] { DTensor::from_local(block, line, {Partial(ReduceOp::Prod)}); }),
      row<ValueError>("from_local: a reduce op out of the enum", "placements",
                      [=] { DTensor::from_local(block, line, {Partial(ReduceOp(77))}); }),
      row<ShapeError>("distribute: Shard dim past the tensor", "placements",
                      [=] { DTensor::distribute(block, line, {Shard(5)}); }),
      row<ValueError>("distribute: placements of a 2-D mesh on a 1-D one", "placements",
                      [=] {
                        DTensor::distribute(block, line, {Shard(0), Shard(1)});
                      }),
      row<DTypeError>("distribute: P(avg) of integers", "placements",
                      [=] { DTensor::distribute(ints, line, {Partial(ReduceOp::Avg)}); }),
      row<ShapeError>("redistribute: Shard dim past the tensor", "placements",
                      [=] { DTensor::from_local(block, line, {Replicate()}).redistribute({Shard(2)}); }),
      row<ValueError>("redistribute: no placements", "placements",
                      [=] { DTensor::from_local(block, line, {Replicate()}).redistribute({}); }),
      row<DTypeError>("redistribute: to P(avg) of integers", "placements",
                      [=] { DTensor::from_local(ints, line, {Replicate()}).redistribute({Partial(ReduceOp::Avg)}); }),
      row<ValueError>(
          "explain_redistribute: a placement too many", "placements",
          [=] {
            DTensor::from_local(block, line, {Replicate()}).explain_redistribute({Replicate(), Replicate()});
          }),
      row<ShapeError>("Placement::normalized: dim past the tensor", "dim 3", [] { (void)Shard(3).normalized(2); }),
      row<ValueError>("chunk_span: no parts", "parts", [] { (void)chunk_span(4, 0, 0); }),
      row<ValueError>("chunk_span: index past the parts", "index", [] { (void)chunk_span(4, 2, 2); }),
      row<ValueError>("local_block: coordinate of the wrong length", "coordinate",
                      [] {
                        (void)local_block({4}, {2}, {0, 0}, {Shard(0)});
                      }),
  };
}

}  // namespace bad_input
