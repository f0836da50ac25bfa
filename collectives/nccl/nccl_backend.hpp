// The NCCL transport behind Communicator (internal; part of the CUDA backend library,
// libdtensor_cuda.so, which registers it as "nccl": collectives/comm_backends.hpp).
#pragma once

#include "collectives/communicator.hpp"

#include <memory>

namespace dtensor::detail {

// A group over the same ranks as `host` (an MPI group), whose ranks each drive GPU `device`.
// Collective over `host`: rank 0 makes the NCCL unique id and sends it over `host`. Host
// (CPU) tensors passed to the result keep going through `host`.
std::shared_ptr<CommBackend> create_nccl_backend(std::shared_ptr<CommBackend> host, int device);

}  // namespace dtensor::detail
