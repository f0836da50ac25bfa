// The chunked reduce-scatter (and all-reduce) algorithm over MPI point-to-point messages
// (internal header).
//
// Every rank's input holds size() blocks; block i (counts[i] elements at displs[i]) is reduced
// over all ranks onto rank i. The blocks are cut into chunks of `chunk_elements` and step s
// handles chunk s of every block, two steps in flight:
//   exchange(s): send chunk s of block j to rank j, receive everyone's chunk s of my block into
//                a small scratch slot (stays in cache);
//   reduce(s):   combine the size() chunks of my block in rank order into `out` (our kernel);
//   gather(s):   (all-reduce only) send my reduced chunk to everyone, receive theirs in place.
// Reducing in rank order makes all-reduce results bitwise identical on every rank. Each stage
// advances from test()/wait(), so the async form is this state machine and the blocking form
// is the same object waited on at once.
#pragma once

#include "collectives/mpi/mpi_support.hpp"

#include <cstddef>
#include <memory>
#include <vector>

namespace dtensor::detail {

struct ReducePlan {
  DType dtype = DType::F32;
  ReduceOp op = ReduceOp::Sum;
  const std::byte* in = nullptr;
  std::byte* out = nullptr;       // this rank's reduced block; may be its own input block
  std::byte* gathered = nullptr;  // all-reduce: block i of every rank lands at displs[i]
  std::vector<int64_t> counts;    // elements per block, one per rank, equal on all ranks
  std::vector<int64_t> displs;
  std::vector<Tensor> keep_alive;  // the tensors behind in / out / gathered
  bool stream_out = false;         // write `out` with non-temporal stores (see reduce_blocks)
};

// Starts the algorithm on `comm` (a communicator private to our algorithms) using message tags
// tag and tag + 1, which no other operation in flight on comm may use.
std::shared_ptr<WorkImpl> start_reduce_pipeline(MPI_Comm comm, int tag, ReducePlan plan, int64_t chunk_bytes);

}  // namespace dtensor::detail
