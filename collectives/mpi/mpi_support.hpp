// Helpers shared by the MPI backend's files (internal header): error checks, type mapping,
// int counts, and the Work of an operation that is a set of MPI requests.
#pragma once

#include "collectives/communicator.hpp"

// Only MPI's C API is used: skip the deprecated C++ bindings (and their warnings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstddef>
#include <exception>
#include <functional>
#include <span>
#include <vector>

namespace dtensor::detail {

// Throws CommError "[call] <MPI's error string> (MPI error N)" unless rc is MPI_SUCCESS.
// Communicators are set to MPI_ERRORS_RETURN, so every failure arrives here.
void mpi_check(int rc, const char* call);

// bf16 and f16 have no MPI type: they travel as 16-bit integers and only our kernels reduce them.
MPI_Datatype mpi_datatype(DType dtype);
// The predefined MPI reduction for op; Avg sums and the caller divides.
MPI_Op mpi_reduce_op(ReduceOp op);

// MPI counts and displacements are int. A larger value is refused with a CommError naming the
// operation and the argument rather than overflowing (the chunked reduce algorithms, broadcast
// and send/recv split big buffers themselves and never hit this).
int mpi_int(int64_t value, const char* op, const char* what);
std::vector<int> mpi_ints(std::span<const int64_t> values, const char* op, const char* what);
// Exclusive prefix sums of counts: where each rank's block starts.
std::vector<int64_t> displacements(std::span<const int64_t> counts);

// Pieces of at most 2^30 elements so one message never exceeds MPI's int count; an empty buffer
// is one empty piece, so empty messages still match. Calls fn(byte offset, element count).
void for_each_piece(int64_t numel, size_t element_size, const std::function<void(size_t, int)>& fn);

// Completes all requests / reports whether all are complete; an error on any throws.
void mpi_wait_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses);
bool mpi_test_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses);

// For the destructor of an unfinished operation. While an exception unwinds the stack (this rank
// is failing) it must not block, because the other ranks may never complete the operation: the
// buffers MPI may still write are then kept alive for good and false is returned. Otherwise it
// returns true and the caller waits; a failure there ends the job (a destructor cannot throw).
bool may_wait_in_destructor(std::vector<Tensor> buffers, std::vector<std::vector<int>> int_arrays = {});
[[noreturn]] void abort_from_destructor(const std::exception& error);

// An asynchronous operation made of MPI requests. It keeps the tensors (so their storage) and
// the int arrays MPI reads until completion, then runs `finish` once with the statuses (the
// division of Avg, the size check of a receive). Destroying it unfinished waits for it (see
// may_wait_in_destructor).
class RequestWork final : public WorkImpl {
 public:
  using Finish = std::function<void(std::span<const MPI_Status>)>;

  RequestWork(std::vector<MPI_Request> requests, std::vector<Tensor> keep_alive,
              std::vector<std::vector<int>> int_arrays, Finish finish = {});
  ~RequestWork() override;
  RequestWork(const RequestWork&) = delete;
  RequestWork& operator=(const RequestWork&) = delete;

  bool test() override { return complete(false); }
  void wait() override { complete(true); }

 private:
  bool complete(bool block);

  std::vector<MPI_Request> requests_;
  std::vector<MPI_Status> statuses_;
  std::vector<Tensor> keep_alive_;
  std::vector<std::vector<int>> int_arrays_;
  Finish finish_;
  bool done_ = false;
  std::exception_ptr error_;
};

}  // namespace dtensor::detail
