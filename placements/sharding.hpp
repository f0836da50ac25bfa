// Sharding arithmetic: which block of the global tensor a mesh coordinate holds.
//
// One tensor dim of size n split over k ranks follows torch.chunk: chunk = ceil(n / k) and rank
// r holds [r * chunk, min(n, (r + 1) * chunk)), so trailing ranks may hold a short or an empty
// piece (n = 5, k = 4 gives 2, 2, 1, 0). Several mesh dims sharding the same tensor dim apply
// left to right: mesh dim 0 splits the dim, mesh dim 1 splits each piece again.
#pragma once

#include "placements/placement.hpp"
#include "tensor/tensor.hpp"

#include <vector>

namespace dtensor {

struct ChunkSpan {
  int64_t offset = 0;
  int64_t size = 0;
};

// The piece `index` of n elements split into `parts` torch.chunk pieces.
ChunkSpan chunk_span(int64_t n, int64_t parts, int64_t index);
// Sizes of all `parts` pieces (trailing zeros included).
std::vector<int64_t> chunk_sizes(int64_t n, int64_t parts);

struct Block {
  Shape shape;   // local shape
  Shape offset;  // global offset of element 0 of the block
};

// The block held at `coordinate` of a mesh with `mesh_shape`. Placements must be normalized
// (see normalize_placements); Replicate and Partial leave a dim whole.
Block local_block(const Shape& global_shape, const Shape& mesh_shape, const std::vector<int64_t>& coordinate,
                  const Placements& placements);

}  // namespace dtensor
