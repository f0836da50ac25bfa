// Opt-in NCCL communicators. The NCCL transport lives in the CUDA backend library (loaded on the
// first call; DeviceError naming it and the reason where it cannot be loaded: tensor/device_kernels.hpp).
//
//   Communicator gpu_world = nccl_world();                   // collective over the MPI world
//   DeviceMesh mesh = DeviceMesh::from_range(gpu_world, 0, {2, 4}, {"dp", "tp"});
//   Tensor x = Tensor::zeros({1024}, DType::BF16, nccl_device());
//   mesh.comm("tp").all_reduce(x);                           // ncclAllReduce on the tp group
//
// Each rank drives GPU = its node-local rank (modulo the GPUs visible). The mesh's per-dim
// communicators are ncclCommSplit from this one. Tensors on that GPU go through NCCL; CPU
// tensors on the same Communicator go through MPI as before.
//
// Completion is in stream order: a call returns once the NCCL operation is queued on the GPU's
// current stream (tensor/cuda/device_memory.hpp), and every later kernel or copy on that stream
// sees its result; copying the result to the host waits for it. The Work of an async call
// waits on a CUDA event recorded after the operation. NCCL errors, including asynchronous ones
// found while waiting (ncclCommGetAsyncError), raise CommError naming the NCCL call.
#pragma once

#include "collectives/communicator.hpp"

namespace dtensor {

// An NCCL communicator over every rank of the MPI world (starts MPI if needed). Collective:
// every rank must call it. Made once; later calls return the same group.
Communicator nccl_world();

// The GPU this rank's NCCL communicators drive (made by nccl_world(), which it calls).
Device nccl_device();

// The GPU nccl_world() would give this rank (node-local rank modulo the GPUs visible), without
// making an NCCL communicator: for ranks that share a GPU and communicate through MPI.
// Collective over the MPI world; DeviceError when no GPU is visible.
Device local_gpu();

}  // namespace dtensor
