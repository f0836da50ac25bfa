// The MPI backend's single-copy path for the collectives into views (internal header).
//
// Why: Open MPI on one node moves a flat collective's bytes with one cross-process copy (vader's
// CMA), so a collective whose blocks are strided (the column blocks of a matrix) paid a second,
// full-size copy for the pack or unpack, and on this machine a copy costs about as much as the
// collective itself. Here every rank publishes where its blocks are (pid, address, rows, row
// bytes, row stride) in one small MPI_Alltoall, then each block moves with one
// process_vm_readv (the receiver pulls) or process_vm_writev (the sender pushes) straight
// between the two views; an all-reduce ends the operation, so no rank reuses a buffer a peer
// still reads or writes, and every rank learns whether any transfer failed.
//
// Used only when every rank of the group is on one node (MPI_COMM_TYPE_SHARED), cross-process
// reads work (probed once per group) and DTENSOR_SINGLE_COPY is not 0; all three are agreed
// across the group, so every rank takes the same path.
#pragma once

#include "collectives/byte_block.hpp"
#include "collectives/mpi/mpi_support.hpp"

#include <sys/types.h>
#include <cstdint>
#include <span>

namespace dtensor::detail {

class SingleCopyExchange {
 public:
  explicit SingleCopyExchange(MPI_Comm comm);

  // send[j] lands in rank j's recv[this rank]. Collective. False (nothing moved, same on every
  // rank) where the group cannot use this path; errors of any rank throw CommError on all.
  bool run(const char* op, std::span<const ByteBlock> send, std::span<const ByteBlock> recv);

 private:
  enum class Support : uint8_t { Unknown, Yes, No };
  bool supported();  // collective on the first call
  bool probe();
  bool all_agree(bool mine) const;
  std::byte* scratch(int64_t bytes);  // staging space for rows too short to move directly

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  pid_t pid_;
  Support support_ = Support::Unknown;
  uint64_t probe_word_ = 0;  // read by every peer while probing
  Tensor scratch_;           // reused from call to call (see kKeptScratchBytes)
};

}  // namespace dtensor::detail
