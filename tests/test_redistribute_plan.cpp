// The planner alone (no ranks): which steps it picks for the cases docs/design.md section 3 names, and that
// every plan over a sweep of meshes and placements is a legal path that ends at the target.
#include <catch2/catch.hpp>

#include "dtensor/redistribute_plan.hpp"
#include "placement_lists.hpp"

using namespace dtensor;

namespace {
struct Expected {
  int64_t mesh_dim;
  StepKind kind;
};

void check_steps(const RedistributePlan& plan, const std::vector<Expected>& expected) {
  REQUIRE(plan.steps.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(plan.steps[i].mesh_dim == expected[i].mesh_dim);
    CHECK(step_kind_name(plan.steps[i].kind) == step_kind_name(expected[i].kind));
  }
}
}  // namespace

TEST_CASE("one mesh dim: each transition is one step of the table", "[plan]") {
  const Shape g = {1024, 768};  // large enough that bandwidth, not latency, decides
  const Shape mesh = {4};
  check_steps(plan_redistribute(g, 4, mesh, {Shard(0)}, {Replicate()}), {{0, StepKind::AllGather}});
  check_steps(plan_redistribute(g, 4, mesh, {Partial()}, {Replicate()}), {{0, StepKind::AllReduce}});
  check_steps(plan_redistribute(g, 4, mesh, {Partial()}, {Shard(1)}), {{0, StepKind::ReduceScatter}});
  check_steps(plan_redistribute(g, 4, mesh, {Shard(0)}, {Shard(1)}), {{0, StepKind::AllToAll}});
  check_steps(plan_redistribute(g, 4, mesh, {Replicate()}, {Shard(0)}), {{0, StepKind::LocalShard}});
  check_steps(plan_redistribute(g, 4, mesh, {Replicate()}, {Partial()}), {{0, StepKind::LocalPartial}});
  check_steps(plan_redistribute(g, 4, mesh, {Shard(1)}, {Partial()}),
              {{0, StepKind::AllGather}, {0, StepKind::LocalPartial}});
  check_steps(plan_redistribute(g, 4, mesh, {Partial(ReduceOp::Max)}, {Partial()}),
              {{0, StepKind::AllReduce}, {0, StepKind::LocalPartial}});
  CHECK(plan_redistribute(g, 4, mesh, {Shard(0)}, {Shard(0)}).steps.empty());
}

TEST_CASE("N-D plans touch only what must change and respect nesting", "[plan]") {
  const Shape g = {256, 256, 16};
  // The example of the issue: mesh dim 0 keeps S(1); only mesh dim 1 moves.
  check_steps(plan_redistribute(g, 4, {2, 2}, {Shard(1), Shard(1)}, {Shard(1), Shard(0)}), {{1, StepKind::AllToAll}});
  // Mesh dim 0 cannot give up S(0) while mesh dim 1 splits its pieces: unshard 1 first.
  check_steps(plan_redistribute(g, 4, {2, 2}, {Shard(0), Shard(0)}, {Replicate(), Shard(0)}),
              {{1, StepKind::AllGather}, {0, StepKind::AllGather}, {1, StepKind::LocalShard}});
  check_steps(plan_redistribute(g, 4, {2, 2}, {Partial(), Shard(0)}, {Replicate(), Shard(0)}),
              {{0, StepKind::AllReduce}});
  // A mesh dim of size one never communicates.
  check_steps(plan_redistribute(g, 4, {4, 1}, {Shard(0), Shard(1)}, {Shard(0), Replicate()}), {{1, StepKind::Relabel}});
  // Gathering is cheaper after the reduce-scatter has shrunk the data: order by cost.
  auto plan = plan_redistribute(g, 4, {2, 2}, {Partial(), Shard(0)}, {Replicate(), Replicate()});
  REQUIRE(plan.steps.size() == 2);
  CHECK(plan.steps[0].kind == StepKind::AllReduce);
  CHECK(plan.steps[1].kind == StepKind::AllGather);
}

TEST_CASE("the cost model decides between valid plans", "[plan]") {
  // A tiny S(0) -> S(1) is latency-bound: one all_gather (8.6 us) + a local slice beats an
  // all_to_all (10.1 us); a large one is bandwidth-bound and the all_to_all moves k times less.
  check_steps(plan_redistribute({8, 6}, 4, {4}, {Shard(0)}, {Shard(1)}),
              {{0, StepKind::AllGather}, {0, StepKind::LocalShard}});
  check_steps(plan_redistribute({1024, 768}, 4, {4}, {Shard(0)}, {Shard(1)}), {{0, StepKind::AllToAll}});
}

TEST_CASE("every plan over a sweep is a legal path ending at the target", "[plan]") {
  const std::vector<Shape> meshes = {{1}, {3}, {2, 2}, {1, 4}, {2, 1, 2}};
  const std::vector<Placement> choices = {Replicate(), Shard(0), Shard(1), Partial()};
  int64_t plans = 0;
  for (const Shape& mesh : meshes) {
    auto lists = testing::placement_lists(mesh.size(), choices, 2);
    for (const auto& src : lists) {
      for (const auto& dst : lists) {
        auto plan = plan_redistribute({5, 3}, 4, mesh, src, dst);
        Placements state = src;
        int64_t collectives = 0;
        for (const auto& step : plan.steps) {
          REQUIRE(step.before == state);
          state[size_t(step.mesh_dim)] = step.to;
          collectives += is_collective(step.kind) ? 1 : 0;
          if (mesh[size_t(step.mesh_dim)] == 1) CHECK(step.kind == StepKind::Relabel);
        }
        CHECK(state == dst);
        // Each mesh dim needs at most one collective of its own plus one detour per later dim.
        CHECK(collectives <= int64_t(2 * mesh.size()));
        ++plans;
      }
    }
  }
  CHECK(plans > 4000);
}

TEST_CASE("explain names each step with its collective and bytes", "[plan]") {
  auto plan = plan_redistribute({6, 4}, 4, {2}, {Shard(0)}, {Replicate()});
  std::string text = explain_plan(plan, {6, 4}, 4, {2}, {1});
  CHECK_THAT(text,
             Catch::Contains("mesh dim 0: S(0) -> R") && Catch::Contains("all_gather") && Catch::Contains("96 bytes"));
  // The columns line up whatever the placements' lengths.
  auto two = plan_redistribute({6, 4}, 4, {2, 2}, {Partial(), Shard(0)}, {Replicate(), Replicate()});
  std::string lines = explain_plan(two, {6, 4}, 4, {2, 2}, {0, 0});
  CHECK_THAT(lines, Catch::Contains("mesh dim 0: P(sum) -> R      all_reduce") &&
                        Catch::Contains("mesh dim 1: S(0) -> R        all_gather"));
  CHECK(&cached_plan({6, 4}, 4, {2}, {Shard(0)}, {Replicate()}) ==
        &cached_plan({6, 4}, 4, {2}, {Shard(0)}, {Replicate()}));
}
