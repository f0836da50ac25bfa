// Collectives backends that live in a device backend library (internal).
//
// A device backend library (tensor/device_kernels.hpp) registers its transports by name from its
// entry point; the core makes them by name, loading that library first. The CUDA backend
// registers "nccl" (collectives/nccl/nccl_backend.cpp), which nccl_world() asks for.
#pragma once

#include "collectives/communicator.hpp"

#include <functional>
#include <memory>
#include <string>

namespace dtensor::detail {

// A group over the same ranks as `host` (an MPI group) whose ranks each drive `device`.
// Collective over `host`.
using CommBackendFactory =
    std::function<std::shared_ptr<CommBackend>(std::shared_ptr<CommBackend> host, Device device)>;

// Called by a backend library's entry point; replaces an earlier factory of the same name.
void register_comm_backend(const std::string& name, CommBackendFactory factory);

// Loads the backend library of device.type (DeviceError naming the library and the reason when
// it cannot be loaded), then makes the transport `name` (CommError when none has that name).
std::shared_ptr<CommBackend> create_comm_backend(const std::string& name, std::shared_ptr<CommBackend> host,
                                                 Device device);

}  // namespace dtensor::detail
