// DTensor: one logical tensor spread over a DeviceMesh.
//
// A DTensor is (local tensor, mesh, placements, global shape, dtype). The local tensor is this
// rank's block: for Shard(d) on mesh dim m the torch.chunk piece at this rank's coordinate, for
// Replicate the whole extent, for Partial(op) a value the op reduces over mesh dim m.
//
//   DeviceMesh mesh = DeviceMesh::from_world({2, 2}, {"dp", "tp"});
//   DTensor x = DTensor::distribute(full, mesh, {Shard(0), Replicate()});   // full read on rank 0
//   DTensor y = x.redistribute({Replicate(), Shard(1)});                     // planned, cached
//   Tensor everything = y.full_tensor();
//
// Construction and redistribute are collective over the mesh; a rank outside it gets a MeshError.
//
// from_local, to_local, redistribute and full_tensor are differentiable, as in PyTorch: when their
// input requires a gradient (dtensor/autograd.hpp) and grad mode is on, they record a graph node,
// so code written with these methods (every nn strategy's hooks) trains with nothing else
// written. Otherwise they cost one null test of the autograd slot.
#pragma once

#include "collectives/work.hpp"
#include "dtensor/redistribute_plan.hpp"
#include "mesh/device_mesh.hpp"

#include <memory>
#include <optional>
#include <string>

namespace dtensor {

// A DTensor's autograd state, defined by dtensor/autograd/node.hpp; as Tensor does, a DTensor only
// carries the slot.
struct DTensorAutogradMeta;

namespace detail {
struct OpAccess;  // dtensor/ops: wraps an op's local result (see ops/dispatch.cpp)
}

class DTensor {
 public:
  DTensor() = default;

  // Wraps this rank's block without communication (a graph node when `local` requires a gradient:
  // the gradient of the result comes back as this rank's block, a Partial read as Replicate).
  // Without `global_shape` it is inferred: every Shard dim is assumed evenly split (as torch's
  // from_local does), which with `check` is then verified across ranks. With `check`, ranks also
  // agree on dtype, and each local shape must equal the block the placements give it (ShapeError /
  // DTypeError naming the rank otherwise).
  static DTensor from_local(const Tensor& local, const DeviceMesh& mesh, const Placements& placements,
                            const std::optional<Shape>& global_shape = std::nullopt, bool check = false);

  // Scatters `full` from the mesh rank whose world rank is `src_rank`; other ranks may pass an
  // undefined tensor and never allocate the full size. Partial placements start with the whole
  // value on coordinate 0 of that mesh dim (zeros elsewhere) for sum, the value everywhere else.
  // A rank's blocks live on the device of the tensor it passed, or the source's if it passed none.
  static DTensor distribute(const Tensor& full, const DeviceMesh& mesh, const Placements& placements, int src_rank = 0);

  // This rank's block; with autograd state recorded as a new handle (the gradient of the block is
  // wrapped with this DTensor's placements), hence returned by value.
  Tensor to_local() const;
  // This rank's block itself, never recorded: for code that records its own node (dtensor ops and
  // their backwards) or wants no graph (checkpoint writing, shapes and devices).
  const Tensor& local_tensor() const { return local_; }
  const DeviceMesh& mesh() const { return mesh_; }
  const Placements& placements() const { return placements_; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  DType dtype() const { return local_.dtype(); }

  // The whole logical tensor on every mesh rank (a redistribute to all-Replicate).
  Tensor full_tensor() const;
  // Its backward redistributes the gradient back to this tensor's placements, a Partial read as
  // Replicate (PyTorch's rule).
  DTensor redistribute(const Placements& target) const;
  // The same, refusing (MeshError) a mesh other than this tensor's: data moves within one mesh.
  DTensor redistribute(const DeviceMesh& mesh, const Placements& target) const;
  // Starts the redistribute; the result is valid after wait() (which records as redistribute does).
  class Pending;
  Pending redistribute_async(const Placements& target) const;
  // The plan redistribute(target) would run, one line per step, bytes for this rank.
  std::string explain_redistribute(const Placements& target) const;

  // Autograd slot (dtensor/autograd.hpp reads and sets it). Empty unless the DTensor is a leaf
  // that requires a gradient or the output of a recorded op; handle copies share it, and the
  // DTensors that calls above return start without it.
  const std::shared_ptr<DTensorAutogradMeta>& autograd_meta() const { return autograd_meta_; }
  void set_autograd_meta(std::shared_ptr<DTensorAutogradMeta> meta) { autograd_meta_ = std::move(meta); }

 private:
  friend struct detail::OpAccess;
  DTensor(Tensor local, DeviceMesh mesh, Placements placements, Shape shape);
  Pending start_redistribute(const Placements& target, bool blocking) const;
  // The data movement of redistribute, never recorded (dtensor ops read their inputs so: the op
  // records its own node).
  DTensor redistribute_untracked(const Placements& target) const;

  Tensor local_;
  DeviceMesh mesh_;
  Placements placements_;
  Shape shape_;
  std::shared_ptr<DTensorAutogradMeta> autograd_meta_;
};

// A redistribute in flight. Steps run in order; each collective step is started without
// blocking and the next one starts when wait()/test() sees it finish.
class DTensor::Pending {
 public:
  bool test();
  DTensor wait();

 private:
  friend class DTensor;
  struct State;
  std::shared_ptr<State> state_;
};

// A terminal picture of which mesh coordinates hold which block of a 1-D or 2-D DTensor.
std::string visualize_sharding(const DTensor& tensor);

}  // namespace dtensor
