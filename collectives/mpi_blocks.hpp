// Strided blocks for MPI (internal header): an MPI datatype that walks the elements of any
// tensor view where they lie, so collectives read and write non-contiguous blocks (a narrow
// along a non-leading dim) without a staging copy.
#pragma once

#include "collectives/mpi_support.hpp"

#include <vector>

namespace dtensor::detail {

// Committed datatypes, one per block, each addressing its block's elements absolutely (use
// with MPI_BOTTOM and displacement 0). Freed on destruction.
class BlockTypes {
 public:
  explicit BlockTypes(std::span<const Tensor> blocks);
  ~BlockTypes();
  BlockTypes(const BlockTypes&) = delete;
  BlockTypes& operator=(const BlockTypes&) = delete;

  const std::vector<MPI_Datatype>& types() const { return types_; }
  const std::vector<int>& counts() const { return counts_; }  // 1, or 0 for an empty block
  const std::vector<int>& displs() const { return displs_; }  // all 0

 private:
  std::vector<MPI_Datatype> types_;
  std::vector<int> counts_;
  std::vector<int> displs_;
  std::vector<bool> owned_;
};

}  // namespace dtensor::detail
