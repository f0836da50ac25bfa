// Device tensors on a host transport (internal).
//
// With one GPU and several ranks there is one NCCL-capable device for many processes, so the
// ranks talk over MPI, which moves host memory only. This backend sits in front of the MPI
// backend and lets CUDA tensors through by staging them: the inputs are copied to pinned host
// memory, the MPI collective runs there, and the outputs are copied back to the device. CPU
// tensors pass straight through. Every staged call completes before it returns (the Work of an
// async call is already complete), so the device tensors may be reused at once. Pinned memory and
// copies come from the device backend (tensor/device_kernels.hpp), loaded when the first device
// tensor arrives.
#pragma once

#include "collectives/communicator.hpp"

#include <memory>

namespace dtensor::detail {

// `host` with device tensors staged through pinned host memory; its splits are staged too.
std::shared_ptr<CommBackend> stage_device_tensors(std::shared_ptr<CommBackend> host);

}  // namespace dtensor::detail
