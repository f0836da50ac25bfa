// The redistribute planner: turns (source placements, target placements, global shape, mesh
// shape) into a list of per-mesh-dim steps, as data. The executor (redistribute.cpp) runs the list.
//
// One step changes the placement of one mesh dim. Which steps are legal depends on the whole
// placement list: mesh dims that shard the same tensor dim nest left to right, so a mesh dim may
// only gather, scatter or all-to-all a tensor dim that no later mesh dim also shards. The planner
// searches (Dijkstra) over states where each mesh dim holds its source, its target or Replicate,
// pricing every step with the cost model on the block the step really sees (uneven shapes
// included). A step never repeats work: every collective it emits changes a placement that must
// change, or is the cheapest legal detour (e.g. gathering an inner shard before its outer dim).
#pragma once

#include "dtensor/cost_model.hpp"
#include "placements/sharding.hpp"

#include <string>
#include <vector>

namespace dtensor {

enum class StepKind : uint8_t {
  AllGather,      // S(d) -> R
  AllReduce,      // P -> R
  ReduceScatter,  // P -> S(d)
  AllToAll,       // S(i) -> S(j)
  LocalShard,     // R -> S(d): keep this rank's slice, a view
  LocalPartial,   // R -> P: sum keeps the value on coordinate 0 and zeroes the others
  Relabel,        // a mesh dim of size one: the data is already right
};
std::string_view step_kind_name(StepKind kind);
bool is_collective(StepKind kind);
CollectiveKind collective_of(StepKind kind);  // only for collective steps

struct RedistributeStep {
  int64_t mesh_dim = 0;
  StepKind kind = StepKind::Relabel;
  Placements before;  // the whole placement list this step starts from
  Placement to = Replicate();
};

struct RedistributePlan {
  Placements src;
  Placements dst;
  std::vector<RedistributeStep> steps;
  double estimated_us = 0;  // for the largest block (mesh coordinate 0)
};

// Placements must already be normalized (non-negative Shard dims, one per mesh dim).
RedistributePlan plan_redistribute(const Shape& global_shape, size_t element_size, const Shape& mesh_shape,
                                   const Placements& src, const Placements& dst,
                                   const CostModel& model = CostModel::current());

// The same, memoised by (shape, element size, mesh shape, src, dst); thread-safe.
const RedistributePlan& cached_plan(const Shape& global_shape, size_t element_size, const Shape& mesh_shape,
                                    const Placements& src, const Placements& dst);

// Bytes the step's collective moves on the rank at `coordinate`, in the Communicator counters'
// convention (0 for local steps).
int64_t step_bytes(const RedistributeStep& step, const Shape& global_shape, size_t element_size,
                   const Shape& mesh_shape, const std::vector<int64_t>& coordinate);

// One line per step: mesh dim, from -> to, collective, bytes on this rank, estimated time.
std::string explain_plan(const RedistributePlan& plan, const Shape& global_shape, size_t element_size,
                         const Shape& mesh_shape, const std::vector<int64_t>& coordinate,
                         const CostModel& model = CostModel::current());

}  // namespace dtensor
