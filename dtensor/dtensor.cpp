// DTensor construction (from_local, distribute), redistribute and full_tensor.
#include "dtensor/dtensor.hpp"

#include "dtensor/autograd/methods.hpp"
#include "dtensor/redistribute.hpp"
#include "tensor/fnv_hash.hpp"

namespace dtensor {

namespace {

void check_partial_dtype(const Placements& placements, DType dtype, const char* op) {
  for (const Placement& p : placements) {
    check<DTypeError>(!(p.is_partial() && p.reduce_op() == ReduceOp::Avg && !is_floating(dtype)), op,
                      "placements {}: P(avg) needs a floating dtype, got {}", placements_str(placements), dtype);
  }
}

void check_member(const DeviceMesh& mesh, const char* op) {
  check<MeshError>(mesh.is_member(), op, "this rank is not in the mesh {}", mesh.to_string());
}

// Runs one all_reduce per mesh dim over a small i64 tensor: afterwards every mesh rank holds the
// reduction over the whole mesh.
Tensor reduce_over_mesh(const DeviceMesh& mesh, Tensor values, ReduceOp op) {
  for (int64_t m = 0; m < mesh.ndim(); ++m) mesh.comm(m).all_reduce(values, op);
  return values;
}

// Global shape from the local blocks: the extent of a sharded dim is the sum of its pieces over
// the mesh dims that shard it, innermost (last) mesh dim first, which undoes torch.chunk exactly.
Shape infer_global_shape(const Tensor& local, const DeviceMesh& mesh, const Placements& placements, bool exact) {
  Shape shape = local.shape();
  for (int64_t m = mesh.ndim(); m-- > 0;) {
    const Placement& p = placements[size_t(m)];
    if (!p.is_shard()) continue;
    if (!exact) {
      shape[size_t(p.dim())] *= mesh.size(m);
      continue;
    }
    auto extent = Tensor::from_vector<int64_t>({shape[size_t(p.dim())]}, {1});
    mesh.comm(m).all_reduce(extent, ReduceOp::Sum);
    shape[size_t(p.dim())] = extent.item<int64_t>();
  }
  return shape;
}

// A fingerprint of a shape that fits an i64 (FNV-1a over the sizes), for ranks to compare.
int64_t shape_fingerprint(const Shape& shape) {
  Fnv1a h;
  for (int64_t size : shape) h.add(size);
  return int64_t(h.value() >> 1);
}

// Every mesh rank checks the same facts so that all of them throw together, never one alone.
void check_consistent(const Tensor& local, const DeviceMesh& mesh, const Placements& placements, const Shape& global) {
  const char* op = "from_local";
  Block block = local_block(global, mesh.shape(), mesh.coordinate(), placements);
  int64_t my_rank = mesh.rank_at(mesh.coordinate());
  int64_t bad = block.shape == local.shape() ? INT64_MAX : my_rank;
  const int64_t global_hash = shape_fingerprint(global);
  Shape facts = {
      int64_t(local.dtype()), -int64_t(local.dtype()), local.dim(), -local.dim(), global_hash, -global_hash, bad};
  auto agreed = reduce_over_mesh(mesh, Tensor::from_vector<int64_t>(facts, {int64_t(facts.size())}), ReduceOp::Min)
                    .to_vector<int64_t>();
  check<DTypeError>(agreed[0] == -agreed[1], op, "ranks disagree on dtype (this rank has {})", local.dtype());
  check<ShapeError>(agreed[2] == -agreed[3], op, "ranks disagree on the number of dims (this rank has {})",
                    local.dim());
  // Replicate dims take each rank's local size as the global one: blocks of different sizes there
  // (or different global_shape arguments) would give each rank another tensor.
  check<ShapeError>(agreed[4] == -agreed[5], op,
                    "ranks disagree on the global shape (this rank: global {} from local shape {} and {})",
                    shape_str(global), shape_str(local.shape()), placements_str(placements));
  check<ShapeError>(agreed[6] == INT64_MAX, op,
                    "rank {} holds a local shape that does not match {} of global shape {} (this rank: "
                    "local {}, expected {})",
                    agreed[6], placements_str(placements), shape_str(global), shape_str(local.shape()),
                    shape_str(block.shape));
}

}  // namespace

DTensor::DTensor(Tensor local, DeviceMesh mesh, Placements placements, Shape shape)
    : local_(std::move(local)), mesh_(std::move(mesh)), placements_(std::move(placements)), shape_(std::move(shape)) {}

DTensor DTensor::from_local(const Tensor& local, const DeviceMesh& mesh, const Placements& placements,
                            const std::optional<Shape>& global_shape, bool check) {
  const char* op = "from_local";
  check_member(mesh, op);
  dtensor::check<ValueError>(local.defined(), op, "local is an undefined tensor");
  Placements normalized = normalize_placements(placements, local.dim(), mesh.ndim(), op);
  check_partial_dtype(normalized, local.dtype(), op);
  Shape global = global_shape ? *global_shape : infer_global_shape(local, mesh, normalized, check);
  dtensor::check<ShapeError>(int64_t(global.size()) == local.dim(), op,
                             "global shape {} has {} dims but the local tensor has {}", shape_str(global),
                             global.size(), local.dim());
  if (check) {
    check_consistent(local, mesh, normalized, global);
  } else if (global_shape) {
    Block block = local_block(global, mesh.shape(), mesh.coordinate(), normalized);
    dtensor::check<ShapeError>(
        block.shape == local.shape(), op, "local shape {} is not the block {} gives of global shape {} (expected {})",
        shape_str(local.shape()), placements_str(normalized), shape_str(global), shape_str(block.shape));
  }
  DTensor out(local, mesh, std::move(normalized), std::move(global));
  // dtensor/autograd/ is part of this library. The methods reach it themselves so that code
  // written with them (strategies' hooks, users' code) records a graph without naming autograd::.
  if (!local.autograd_meta()) return out;
  return autograd::record_from_local(local, std::move(out));
}

Tensor DTensor::to_local() const {
  if (!autograd_meta_) return local_;
  return autograd::record_to_local(*this, local_);
}

Tensor DTensor::full_tensor() const { return redistribute(Placements(size_t(mesh_.ndim()), Replicate())).to_local(); }

DTensor DTensor::redistribute(const Placements& target) const {
  return start_redistribute(target, /*blocking=*/true).wait();
}

DTensor DTensor::redistribute(const DeviceMesh& mesh, const Placements& target) const {
  check<MeshError>(mesh.ranks() == mesh_.ranks() && mesh.shape() == mesh_.shape(), "redistribute",
                   "target mesh {} differs from the tensor's mesh {}; redistribute moves data within one mesh",
                   mesh.to_string(), mesh_.to_string());
  return redistribute(target);
}

std::string DTensor::explain_redistribute(const Placements& target) const {
  Placements dst = normalize_placements(target, dim(), mesh_.ndim(), "explain_redistribute");
  const auto& plan = cached_plan(shape_, local_.element_size(), mesh_.shape(), placements_, dst);
  return explain_plan(plan, shape_, local_.element_size(), mesh_.shape(), mesh_.coordinate());
}

// Async redistribute ----------------------------------------------------------------------------

struct DTensor::Pending::State {
  DTensor source;
  const RedistributePlan* plan;
  size_t next_step = 0;
  Tensor current;
  Work in_flight;
  bool blocking;

  StepContext context() const { return {source.mesh_, source.shape_, source.mesh_.shape(), source.mesh_.coordinate()}; }
  std::function<void()> finish_in_flight;

  // Runs the remaining steps to the end: the redistributed tensor, without autograd state.
  DTensor finish() {
    while (!advance()) in_flight.wait();
    return DTensor(current, source.mesh_, plan->dst, source.shape_);
  }

  // Starts steps until one is in flight (async) or all are done; true when all are done.
  bool advance() {
    while (in_flight.test()) {
      if (finish_in_flight) std::exchange(finish_in_flight, nullptr)();
      if (next_step == plan->steps.size()) return true;
      StepRun run =
          start_step(plan->steps[next_step++], current, context(), blocking ? CommMode::Blocking : CommMode::Async);
      current = run.out;
      in_flight = run.work;
      finish_in_flight = run.finish;
    }
    return false;
  }
};

DTensor::Pending DTensor::redistribute_async(const Placements& target) const {
  return start_redistribute(target, /*blocking=*/false);
}

DTensor::Pending DTensor::start_redistribute(const Placements& target, bool blocking) const {
  const char* op = "redistribute";
  check_member(mesh_, op);
  Placements dst = normalize_placements(target, dim(), mesh_.ndim(), op);
  check_partial_dtype(dst, dtype(), op);
  Pending pending;
  const auto* plan = &cached_plan(shape_, local_.element_size(), mesh_.shape(), placements_, dst);
  pending.state_ = std::make_shared<Pending::State>(Pending::State{*this, plan, 0, local_, Work(), blocking, nullptr});
  pending.state_->advance();
  return pending;
}

DTensor DTensor::redistribute_untracked(const Placements& target) const {
  return start_redistribute(target, /*blocking=*/true).state_->finish();
}

bool DTensor::Pending::test() { return state_->advance(); }

DTensor DTensor::Pending::wait() {
  DTensor out = state_->finish();
  // The one place both redistribute forms record (see from_local for why the method does).
  if (!state_->source.autograd_meta_) return out;
  return autograd::record_redistribute(state_->source, std::move(out));
}

}  // namespace dtensor
