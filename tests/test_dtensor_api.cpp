// DTensor's public calls on a 1-D world mesh (np 1..4): distribute, async redistribute, the
// scoped recorder, explain / visualize, and the bad-input cases of docs/design.md section 9.
#include <catch2/catch.hpp>

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/dtensor.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

using namespace dtensor;

namespace {
Tensor sample(const Shape& shape) { return random(shape, DType::F64, {.seed = 11}); }
DeviceMesh world_line() { return DeviceMesh::from_world({dtensor::world().size()}); }
}  // namespace

TEST_CASE("distribute scatters from a source rank and full_tensor restores it", "[dtensor]") {
  DeviceMesh mesh = world_line();
  const int last = dtensor::world().size() - 1;
  const Tensor full = sample({7, 5});
  for (const Placements& p : std::vector<Placements>{{Shard(0)}, {Shard(-1)}, {Replicate()}, {Partial()}}) {
    // Only the source passes the tensor; the others pass nothing.
    Tensor given = dtensor::world().rank() == last ? full : Tensor();
    DTensor x = DTensor::distribute(given, mesh, p, last);
    Block block = local_block({7, 5}, mesh.shape(), mesh.coordinate(), x.placements());
    CHECK(x.to_local().shape() == block.shape);
    CHECK(x.shape() == Shape{7, 5});
    CHECK(equal(x.full_tensor(), full));
  }
}

TEST_CASE("async redistribute gives what the blocking one gives", "[dtensor]") {
  DeviceMesh mesh = world_line();
  const Tensor full = sample({6, 9});
  DTensor x = DTensor::distribute(full, mesh, {Shard(1)});
  auto pending = x.redistribute_async({Shard(0)});
  DTensor a = pending.wait();
  DTensor b = x.redistribute({Shard(0)});
  CHECK(equal(a.to_local().contiguous(), b.to_local().contiguous()));
  CHECK(equal(a.full_tensor(), full));
}

TEST_CASE("the recorder sees exactly the collectives explain announces", "[dtensor]") {
  DeviceMesh mesh = world_line();
  DTensor x = DTensor::distribute(sample({8, 3}), mesh, {Shard(0)});
  std::string plan = x.explain_redistribute({Replicate()});
  CommRecorder recorder;
  x.redistribute({Replicate()});
  if (mesh.size() == 1) {
    CHECK(recorder.calls().empty());
    CHECK_THAT(plan, Catch::Contains("relabel"));
    return;
  }
  REQUIRE(recorder.calls().size() == 1);
  CHECK(recorder.calls()[0].kind == CollectiveKind::AllGather);
  CHECK(recorder.calls()[0].bytes == 8 * 3 * 8);
  CHECK(recorder.calls()[0].group == mesh.comm(0).id());
  CHECK_THAT(plan, Catch::Contains("all_gather") && Catch::Contains("192 bytes"));
}

TEST_CASE("visualize_sharding draws which ranks hold which block", "[dtensor]") {
  DeviceMesh mesh = world_line();
  DTensor x = DTensor::distribute(sample({4, 6}), mesh, {Shard(1)});
  std::string picture = visualize_sharding(x);
  CHECK_THAT(picture, Catch::Contains("| rank 0 "));
  int64_t first_cols = chunk_span(6, mesh.size(), 0).size;  // torch.chunk: ceil(6 / k)
  CHECK_THAT(picture, Catch::Contains(fmt::format("[0, {})", first_cols)));
  // 6 columns over 4 ranks are 2, 2, 2, 0: then the last rank is named as holding nothing.
  const bool last_empty = chunk_span(6, mesh.size(), mesh.size() - 1).size == 0;
  CHECK(last_empty == (picture.find("holds an empty block") != std::string::npos));
  if (mesh.size() > 1) {
    // Replicated: one cell held by every rank.
    std::string all = visualize_sharding(DTensor::distribute(sample({4, 6}), mesh, {Replicate()}));
    CHECK_THAT(all, Catch::Contains(mesh.size() == 2 ? "| ranks 0,1 |" : "| ranks 0,1,2"));
    // k - 1 rows over k ranks: torch.chunk gives the last rank none, which the picture says.
    std::string uneven = visualize_sharding(DTensor::distribute(sample({mesh.size() - 1, 2}), mesh, {Shard(0)}));
    CHECK_THAT(uneven, Catch::Contains(fmt::format("rank {} holds an empty block\n", mesh.size() - 1)));
  }
  CHECK_THROWS_AS(visualize_sharding(DTensor::distribute(sample({2, 2, 2}), mesh, {Replicate()})), ShapeError);
}

TEST_CASE("bad input raises typed errors on every rank", "[dtensor][errors]") {
  DeviceMesh mesh = world_line();
  const Tensor full = sample({4, 4});
  DTensor x = DTensor::distribute(full, mesh, {Shard(0)});
  CHECK_THROWS_AS(x.redistribute({Shard(0), Replicate()}), ValueError);  // two placements, 1-D mesh
  CHECK_THROWS_AS(x.redistribute({Shard(2)}), ShapeError);               // dim out of range
  CHECK_THROWS_AS(DTensor::distribute(full, mesh, {Shard(-3)}), ShapeError);
  CHECK_THROWS_WITH(DTensor::from_local(Tensor::zeros({2}, DType::I32), mesh, {Partial(ReduceOp::Avg)}),
                    Catch::Contains("P(avg)") && Catch::Contains("i32"));
  DeviceMesh other = DeviceMesh::from_world({1, dtensor::world().size()});
  CHECK_THROWS_AS(x.redistribute(other, {Replicate(), Replicate()}), MeshError);
  // Ranks that disagree on their local shape: every rank raises, none hangs.
  Tensor local = Tensor::zeros({dtensor::world().rank() == 0 ? 3 : 2, 4}, DType::F32);
  if (mesh.size() > 1) {
    CHECK_THROWS_WITH(DTensor::from_local(local, mesh, {Shard(0)}, Shape{2 * mesh.size(), 4}, true),
                      Catch::Contains("rank 0 holds a local shape"));
  }
  Tensor wrong_dtype = Tensor::zeros({2, 4}, dtensor::world().rank() == 0 ? DType::F64 : DType::F32);
  if (mesh.size() > 1) {
    CHECK_THROWS_AS(DTensor::from_local(wrong_dtype, mesh, {Shard(0)}, std::nullopt, true), DTypeError);
  }
}

TEST_CASE("from_local with the check infers uneven global shapes exactly", "[dtensor]") {
  DeviceMesh mesh = world_line();
  const Tensor full = sample({5, 3});
  Block block = local_block({5, 3}, mesh.shape(), mesh.coordinate(), {Shard(0)});
  Tensor local = full.narrow(0, block.offset[0], block.shape[0]);
  DTensor x = DTensor::from_local(local, mesh, {Shard(0)}, std::nullopt, true);
  CHECK(x.shape() == Shape{5, 3});
  CHECK(equal(x.full_tensor(), full));
}
