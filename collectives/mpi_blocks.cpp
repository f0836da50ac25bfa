#include "collectives/mpi_blocks.hpp"

#include <cstdio>

namespace dtensor::detail {

namespace {

struct DimRun {
  int64_t size;
  int64_t stride;  // elements
};

// The fewest (size, stride) runs, outermost first, that visit the view's elements in order:
// size-1 dims are dropped and a dim merges into the one outside it when their strides chain.
std::vector<DimRun> coalesced_dims(const Tensor& t) {
  std::vector<DimRun> runs;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 1) continue;
    if (!runs.empty() && runs.back().stride == t.stride(d) * t.size(d)) {
      runs.back() = {runs.back().size * t.size(d), t.stride(d)};
    } else {
      runs.push_back({t.size(d), t.stride(d)});
    }
  }
  if (runs.empty()) runs.push_back({1, 1});
  return runs;
}

// Builds the type inside-out: the innermost run is contiguous or an hvector of elements, each
// outer run an hvector of the type inside it.
MPI_Datatype strided_type(const Tensor& t) {
  const MPI_Aint element = MPI_Aint(t.element_size());
  MPI_Datatype type = mpi_datatype(t.dtype());
  bool owned = false;
  auto runs = coalesced_dims(t);
  for (size_t i = runs.size(); i-- > 0;) {
    const DimRun& run = runs[i];
    int count = mpi_int(run.size, "strided block", "dim size");
    MPI_Datatype next = MPI_DATATYPE_NULL;
    if (i + 1 == runs.size() && run.stride == 1) {
      mpi_check(MPI_Type_contiguous(count, type, &next), "MPI_Type_contiguous");
    } else {
      mpi_check(MPI_Type_create_hvector(count, 1, MPI_Aint(run.stride) * element, type, &next),
                "MPI_Type_create_hvector");
    }
    if (owned) mpi_check(MPI_Type_free(&type), "MPI_Type_free");
    type = next;
    owned = true;
  }
  return type;
}

// The block's type placed at its absolute address, committed.
MPI_Datatype absolute_type(const Tensor& t) {
  MPI_Datatype inner = strided_type(t);
  MPI_Aint address = 0;
  mpi_check(MPI_Get_address(t.data_ptr(), &address), "MPI_Get_address");
  int one = 1;
  MPI_Datatype placed = MPI_DATATYPE_NULL;
  mpi_check(MPI_Type_create_struct(1, &one, &address, &inner, &placed), "MPI_Type_create_struct");
  mpi_check(MPI_Type_free(&inner), "MPI_Type_free");
  mpi_check(MPI_Type_commit(&placed), "MPI_Type_commit");
  return placed;
}

}  // namespace

BlockTypes::BlockTypes(std::span<const Tensor> blocks) {
  for (const Tensor& block : blocks) {
    const bool empty = block.numel() == 0;
    types_.push_back(empty ? mpi_datatype(block.dtype()) : absolute_type(block));
    owned_.push_back(!empty);
    counts_.push_back(empty ? 0 : 1);
    displs_.push_back(0);
  }
}

BlockTypes::~BlockTypes() {
  for (size_t i = 0; i < types_.size(); ++i) {
    if (!owned_[i]) continue;
    if (MPI_Type_free(&types_[i]) != MPI_SUCCESS) std::fprintf(stderr, "[MPI_Type_free] failed\n");
  }
}

}  // namespace dtensor::detail
