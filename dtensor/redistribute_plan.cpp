#include "dtensor/redistribute_plan.hpp"

#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <unordered_map>

namespace dtensor {

std::string_view step_kind_name(StepKind kind) {
  switch (kind) {
    case StepKind::AllGather:
      return "all_gather";
    case StepKind::AllReduce:
      return "all_reduce";
    case StepKind::ReduceScatter:
      return "reduce_scatter";
    case StepKind::AllToAll:
      return "all_to_all";
    case StepKind::LocalShard:
      return "local slice";
    case StepKind::LocalPartial:
      return "local partial";
    case StepKind::Relabel:
      return "relabel";
  }
  return "?";
}

bool is_collective(StepKind kind) {
  return kind == StepKind::AllGather || kind == StepKind::AllReduce || kind == StepKind::ReduceScatter ||
         kind == StepKind::AllToAll;
}

CollectiveKind collective_of(StepKind kind) {
  switch (kind) {
    case StepKind::AllGather:
      return CollectiveKind::AllGather;
    case StepKind::AllReduce:
      return CollectiveKind::AllReduce;
    case StepKind::ReduceScatter:
      return CollectiveKind::ReduceScatter;
    case StepKind::AllToAll:
      return CollectiveKind::AllToAll;
    default:
      fail<ValueError>("collective_of", "step {} is not a collective", step_kind_name(kind));
  }
}

namespace {

// True when a mesh dim after m also shards tensor dim d: then m's split of d is not the
// innermost one and m cannot change it without breaking the left-to-right nesting.
bool sharded_after(const Placements& state, size_t m, int64_t d) {
  for (size_t k = m + 1; k < state.size(); ++k) {
    if (state[k].is_shard(d)) return true;
  }
  return false;
}

// The step that moves mesh dim m from state[m] to `to`, if one step can do it.
std::optional<StepKind> single_step(const Placements& state, size_t m, const Placement& to, int64_t group) {
  const Placement& from = state[m];
  if (from == to) return std::nullopt;
  bool from_shard_ok = !from.is_shard() || !sharded_after(state, m, from.dim());
  bool to_shard_ok = !to.is_shard() || !sharded_after(state, m, to.dim());
  if (!from_shard_ok || !to_shard_ok) return std::nullopt;
  if (from.is_partial() && to.is_partial()) return std::nullopt;  // different ops: via Replicate
  if (from.is_shard() && to.is_partial()) return std::nullopt;    // via Replicate
  if (group == 1) return StepKind::Relabel;
  if (from.is_shard()) return to.is_shard() ? StepKind::AllToAll : StepKind::AllGather;
  if (from.is_partial()) return to.is_shard() ? StepKind::ReduceScatter : StepKind::AllReduce;
  return to.is_shard() ? StepKind::LocalShard : StepKind::LocalPartial;
}

int64_t block_bytes(const Shape& global, size_t elem, const Shape& mesh, const std::vector<int64_t>& coord,
                    const Placements& placements) {
  return shape_numel(local_block(global, mesh, coord, placements).shape) * int64_t(elem);
}

double step_cost(const RedistributeStep& step, const Shape& global, size_t elem, const Shape& mesh,
                 const CostModel& model) {
  // Every step costs a little so that, between equal prices, fewer steps win.
  constexpr double kStepUs = 0.01;
  const std::vector<int64_t> origin(mesh.size(), 0);  // holds the largest block under torch.chunk
  int64_t bytes = step_bytes(step, global, elem, mesh, origin);
  if (is_collective(step.kind)) {
    return kStepUs + model.collective_us(collective_of(step.kind), bytes, mesh[size_t(step.mesh_dim)]);
  }
  if (step.kind == StepKind::LocalPartial) {
    return kStepUs + model.copy_us(block_bytes(global, elem, mesh, origin, step.before));
  }
  return kStepUs;
}

// Dijkstra over states; each mesh dim holds its source, its target or Replicate.
struct Search {
  const Shape& global;
  size_t elem;
  const Shape& mesh;
  const Placements& src;
  const Placements& dst;
  const CostModel& model;

  std::vector<Placement> options(size_t m) const {
    std::vector<Placement> out = {src[m]};
    if (!(dst[m] == src[m])) out.push_back(dst[m]);
    if (!src[m].is_replicate() && !dst[m].is_replicate()) out.push_back(Replicate());
    return out;
  }

  RedistributePlan run() const {
    using Entry = std::pair<double, Placements>;
    auto later = [](const Entry& a, const Entry& b) {
      if (a.first != b.first) return a.first > b.first;
      return placements_str(a.second) > placements_str(b.second);  // deterministic on every rank
    };
    std::priority_queue<Entry, std::vector<Entry>, decltype(later)> queue(later);
    std::map<std::string, std::pair<double, std::optional<RedistributeStep>>> best;
    best[placements_str(src)] = {0.0, std::nullopt};
    queue.push({0.0, src});
    while (!queue.empty()) {
      auto [cost, state] = queue.top();
      queue.pop();
      if (cost > best[placements_str(state)].first) continue;
      if (state == dst) break;
      relax(state, cost, queue, best);
    }
    return backtrack(best);
  }

  template <typename Queue, typename Best>
  void relax(const Placements& state, double cost, Queue& queue, Best& best) const {
    for (size_t m = 0; m < mesh.size(); ++m) {
      for (const Placement& to : options(m)) {
        auto kind = single_step(state, m, to, mesh[m]);
        if (!kind) continue;
        RedistributeStep step{int64_t(m), *kind, state, to};
        Placements next = state;
        next[m] = to;
        double next_cost = cost + step_cost(step, global, elem, mesh, model);
        auto key = placements_str(next);
        auto it = best.find(key);
        if (it == best.end() || next_cost < it->second.first) {
          best[key] = {next_cost, step};
          queue.push({next_cost, next});
        }
      }
    }
  }

  template <typename Best>
  RedistributePlan backtrack(const Best& best) const {
    RedistributePlan plan{src, dst, {}, best.at(placements_str(dst)).first};
    Placements state = dst;
    while (!(state == src)) {
      const RedistributeStep& step = *best.at(placements_str(state)).second;
      plan.steps.insert(plan.steps.begin(), step);
      state = step.before;
    }
    return plan;
  }
};

}  // namespace

int64_t step_bytes(const RedistributeStep& step, const Shape& global, size_t elem, const Shape& mesh,
                   const std::vector<int64_t>& coord) {
  switch (step.kind) {
    case StepKind::AllGather: {
      Placements gathered = step.before;
      gathered[size_t(step.mesh_dim)] = Replicate();
      return block_bytes(global, elem, mesh, coord, gathered);
    }
    case StepKind::AllReduce:
    case StepKind::ReduceScatter:
    case StepKind::AllToAll:
      return block_bytes(global, elem, mesh, coord, step.before);
    default:
      return 0;
  }
}

RedistributePlan plan_redistribute(const Shape& global_shape, size_t element_size, const Shape& mesh_shape,
                                   const Placements& src, const Placements& dst, const CostModel& model) {
  check<ValueError>(src.size() == mesh_shape.size() && dst.size() == mesh_shape.size(), "redistribute",
                    "placements {} -> {} must have one entry per mesh dim ({})", placements_str(src),
                    placements_str(dst), mesh_shape.size());
  return Search{global_shape, element_size, mesh_shape, src, dst, model}.run();
}

namespace {
struct PlanKey {
  Shape global;
  size_t elem;
  Shape mesh;
  Placements src, dst;
  bool operator==(const PlanKey&) const = default;
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = placements_hash(k.src) * 31 + placements_hash(k.dst) + k.elem;
    for (int64_t s : k.global) h = h * 1000003u ^ size_t(s);
    for (int64_t s : k.mesh) h = h * 10007u ^ size_t(s);
    return h;
  }
};
}  // namespace

const RedistributePlan& cached_plan(const Shape& global_shape, size_t element_size, const Shape& mesh_shape,
                                    const Placements& src, const Placements& dst) {
  static std::mutex mutex;
  static std::unordered_map<PlanKey, RedistributePlan, PlanKeyHash> cache;
  PlanKey key{global_shape, element_size, mesh_shape, src, dst};
  std::lock_guard lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) {
    it = cache.emplace(key, plan_redistribute(global_shape, element_size, mesh_shape, src, dst)).first;
  }
  return it->second;  // unordered_map never moves its nodes, so the reference stays valid
}

std::string explain_plan(const RedistributePlan& plan, const Shape& global, size_t elem, const Shape& mesh,
                         const std::vector<int64_t>& coord, const CostModel& model) {
  std::string out =
      fmt::format("redistribute {} -> {} of global shape {} on mesh {}: {} step(s)\n", placements_str(plan.src),
                  placements_str(plan.dst), shape_str(global), shape_str(mesh), plan.steps.size());
  for (const RedistributeStep& step : plan.steps) {
    int64_t bytes = step_bytes(step, global, elem, mesh, coord);
    int64_t group = mesh[size_t(step.mesh_dim)];
    double us = is_collective(step.kind) ? model.collective_us(collective_of(step.kind), bytes, group) : 0.0;
    // Padded so that the columns line up whatever the placements' lengths ("R", "P(sum)").
    const std::string change =
        fmt::format("{} -> {}", step.before[size_t(step.mesh_dim)].to_string(), step.to.to_string());
    out += fmt::format("  mesh dim {}: {:<16} {:<14} {:>12} bytes  ~{:.1f} us\n", step.mesh_dim, change,
                       step_kind_name(step.kind), bytes, us);
  }
  return out;
}

}  // namespace dtensor
