// Internal: running one redistribute step on this rank (used by DTensor; see redistribute.cpp).
#pragma once

#include "collectives/work.hpp"
#include "dtensor/redistribute_plan.hpp"
#include "mesh/device_mesh.hpp"

#include <functional>

namespace dtensor {

struct StepContext {
  const DeviceMesh& mesh;
  const Shape& global_shape;
  const Shape& mesh_shape;
  const std::vector<int64_t>& coordinate;

  Communicator comm(size_t mesh_dim) const { return mesh.comm(int64_t(mesh_dim)); }
};

// The step's output block, the collective filling it (an empty Work for local steps or once a
// blocking call returned) and what must run after it completes (an unpack, or nothing). The
// output is valid after work.wait() and finish().
struct StepRun {
  Tensor out;
  Work work;
  std::function<void()> finish;
};

// `in` is this rank's block under step.before. With CommMode::Blocking the call has completed on return.
StepRun start_step(const RedistributeStep& step, const Tensor& in, const StepContext& ctx, CommMode mode);

}  // namespace dtensor
