// The MPI transport behind Communicator (internal header; MPI itself appears only in the
// collectives/mpi_*.cpp files). Callers see the usual backend pair "is available / create".
#pragma once

#include "collectives/communicator.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dtensor::detail {

// Algorithm selection (the measurements behind it are in mpi_backend.cpp):
// - reduce_scatter always runs the chunked pipeline of mpi_pipeline.hpp;
// - all_reduce runs it from kAllReducePipelineMinBytes, and always for bf16/f16 (MPI cannot
//   reduce them); below, one MPI_Allreduce;
// - the pipeline moves kPipelineChunkBytes per peer per step, and writes a reduce_scatter output
//   block of at least kStreamMinBytes with non-temporal stores.
inline constexpr size_t kAllReducePipelineMinBytes = size_t(16) << 20;
inline constexpr int64_t kPipelineChunkBytes = int64_t(1) << 20;
inline constexpr size_t kStreamMinBytes = size_t(4) << 20;

// True unless MPI has already been finalized (it can then never start again).
bool mpi_is_available();

// Starts MPI once (MPI_Init_thread, at least MPI_THREAD_SERIALIZED, errors returned instead of
// aborting) unless the program already did, and returns a group over all of MPI_COMM_WORLD.
// MPI is finalized when the last group created here is released, if this code started it.
std::shared_ptr<CommBackend> create_mpi_world(int* argc, char*** argv);

// Ends every process of the job with `code` (MPI_Abort once MPI runs, process exit otherwise).
[[noreturn]] void mpi_abort_job(int code);

}  // namespace dtensor::detail
