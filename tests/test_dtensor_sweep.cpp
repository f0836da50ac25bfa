// The redistribute property sweep: for mesh shapes that fit the world, tensor shapes that
// divide, do not divide and are smaller than the mesh (empty shards), and pairs of placement
// lists, check that
//   - to_local() after redistribute is exactly the block of the full tensor the target gives,
//   - full_tensor() equals the full tensor,
//   - the collectives that ran (per mesh dim, kind and bytes) are exactly the plan's steps.
// Values are small integers in f64, so every reduction order gives the exact result.
#include <catch2/catch.hpp>

#include "collectives/runtime.hpp"
#include "dtensor/dtensor.hpp"
#include "placement_lists.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <random>

using namespace dtensor;

namespace {

Tensor integer_tensor(const Shape& shape, uint64_t seed) {
  return random(shape, DType::F64, {.seed = seed, .distribution = Distribution::Uniform, .a = -8, .b = 8})
      .to(DType::I64)
      .to(DType::F64);
}

// This rank's block of `full` for placements; along a Partial mesh dim the local values are a
// rank-dependent decomposition whose reduction is exactly the block.
Tensor local_part(const Tensor& full, const DeviceMesh& mesh, const Placements& given) {
  Placements placements = normalize_placements(given, full.dim(), mesh.ndim(), "test");
  Block block = local_block(full.shape(), mesh.shape(), mesh.coordinate(), placements);
  Tensor local = full;
  for (size_t d = 0; d < block.shape.size(); ++d) local = local.narrow(int64_t(d), block.offset[d], block.shape[d]);
  local = local.clone();
  for (int64_t m = 0; m < mesh.ndim(); ++m) {
    const Placement& p = placements[size_t(m)];
    if (!p.is_partial()) continue;
    const int64_t k = mesh.size(m), c = mesh.coordinate()[size_t(m)];
    Tensor noise = integer_tensor(local.shape(), 1000 + uint64_t(m));
    auto v = local.to_vector<double>();
    auto g = noise.to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) {
      switch (p.reduce_op()) {
        case ReduceOp::Sum:
          v[i] = c == 0 ? v[i] - double(k - 1) * g[i] : g[i];
          break;
        case ReduceOp::Avg:
          v[i] += double(2 * c - (k - 1)) * g[i];
          break;
        case ReduceOp::Max:
          v[i] -= c == 0 ? 0.0 : std::abs(g[i]) + 1;
          break;
        default:
          FAIL("no decomposition for this op");
      }
    }
    local = Tensor::from_vector(v, local.shape());
  }
  return local;
}

bool has_partial(const Placements& placements) {
  for (const auto& p : placements)
    if (p.is_partial()) return true;
  return false;
}

struct Sweep {
  int64_t cases = 0;

  void run_case(const DeviceMesh& mesh, const Shape& shape, const Placements& src, const Placements& dst) {
    Tensor full = integer_tensor(shape, 7);
    DTensor x = DTensor::from_local(local_part(full, mesh, src), mesh, src, shape);
    std::vector<CommStats> before;
    for (int64_t m = 0; m < mesh.ndim(); ++m) before.push_back(mesh.comm(m).stats());

    DTensor y = x.redistribute(dst);

    INFO("mesh " << shape_str(mesh.shape()) << " shape " << shape_str(shape) << " " << placements_str(src) << " -> "
                 << placements_str(dst) << "\n"
                 << x.explain_redistribute(dst));
    check_counters(mesh, x, dst, before);
    CHECK(y.placements() == normalize_placements(dst, int64_t(shape.size()), mesh.ndim(), "test"));
    Block block = local_block(shape, mesh.shape(), mesh.coordinate(), y.placements());
    CHECK(y.to_local().shape() == block.shape);
    if (!has_partial(dst)) CHECK(equal(y.to_local().contiguous(), local_part(full, mesh, y.placements())));
    CHECK(equal(y.full_tensor(), full));
    ++cases;
  }

  // What each mesh dim's communicator counted equals the plan's collective steps on that dim.
  static void check_counters(const DeviceMesh& mesh, const DTensor& x, const Placements& dst,
                             const std::vector<CommStats>& before) {
    Placements target = normalize_placements(dst, x.dim(), mesh.ndim(), "test");
    const auto& plan = cached_plan(x.shape(), 8, mesh.shape(), x.placements(), target);
    for (int64_t m = 0; m < mesh.ndim(); ++m) {
      CommStats expected;
      for (const auto& step : plan.steps) {
        if (step.mesh_dim != m || !is_collective(step.kind)) continue;
        auto k = size_t(collective_of(step.kind));
        expected.calls[k] += 1;
        expected.bytes[k] += uint64_t(step_bytes(step, x.shape(), 8, mesh.shape(), mesh.coordinate()));
      }
      const CommStats now = mesh.comm(m).stats();
      for (size_t k = 0; k < kCollectiveKinds; ++k) {
        CHECK(now.calls[k] - before[size_t(m)].calls[k] == expected.calls[k]);
        CHECK(now.bytes[k] - before[size_t(m)].bytes[k] == expected.bytes[k]);
      }
    }
  }
};

std::vector<Shape> meshes_for(int world) {
  std::vector<Shape> all = {{1}, {2}, {3}, {4}, {2, 2}, {1, 4}, {4, 1}, {2, 1, 2}};
  std::vector<Shape> out;
  for (const auto& m : all)
    if (shape_numel(m) == world) out.push_back(m);
  return out;
}

// Sizes that divide the mesh dims, that do not, and that are smaller than them (empty shards).
const std::vector<Shape> kShapes = {{8}, {7}, {2}, {4, 6}, {5, 3}, {1, 2}, {4, 3, 5}, {3, 1, 2}};

}  // namespace

TEST_CASE("redistribute sweep over meshes, shapes and placement pairs", "[dtensor][sweep]") {
  const int world = dtensor::world().size();
  const std::vector<Placement> choices = {Replicate(), Shard(0), Shard(1), Shard(-1), Partial()};
  Sweep sweep;
  std::mt19937 pick(12345);  // same sequence on every rank: all ranks run the same cases
  for (const Shape& mesh_shape : meshes_for(world)) {
    DeviceMesh mesh = DeviceMesh::from_world(mesh_shape);
    for (const Shape& shape : kShapes) {
      auto lists = testing::placement_lists(mesh_shape.size(), choices, int64_t(shape.size()));
      // 3-D meshes have too many pairs to run them all on every test run: a fixed sample.
      bool sample = mesh_shape.size() >= 3;
      for (const auto& src : lists) {
        for (const auto& dst : lists) {
          if (sample && pick() % 8 != 0) continue;
          sweep.run_case(mesh, shape, src, dst);
        }
      }
    }
  }
  INFO("cases: " << sweep.cases);
  CHECK(sweep.cases > 0);
}

TEST_CASE("redistribute with P(avg) and P(max) on 1-D meshes", "[dtensor][sweep]") {
  DeviceMesh mesh = DeviceMesh::from_world({dtensor::world().size()});
  const std::vector<Placement> choices = {Replicate(), Shard(0), Shard(-1), Partial(ReduceOp::Avg),
                                          Partial(ReduceOp::Max)};
  Sweep sweep;
  for (const Shape& shape : kShapes) {
    for (const auto& src : testing::placement_lists(1, choices, int64_t(shape.size()))) {
      for (const auto& dst : testing::placement_lists(1, choices, int64_t(shape.size()))) {
        sweep.run_case(mesh, shape, src, dst);
      }
    }
  }
  CHECK(sweep.cases > 0);
}
