#include "placements/sharding.hpp"

#include <algorithm>

namespace dtensor {

ChunkSpan chunk_span(int64_t n, int64_t parts, int64_t index) {
  check<ValueError>(parts > 0 && index >= 0 && index < parts && n >= 0, "chunk_span",
                    "index {} of parts {} of a dim of size n = {}: expected parts > 0, 0 <= index < parts and n >= 0",
                    index, parts, n);
  int64_t chunk = (n + parts - 1) / parts;
  int64_t start = std::min(index * chunk, n);
  return {start, std::min(chunk, n - start)};
}

std::vector<int64_t> chunk_sizes(int64_t n, int64_t parts) {
  std::vector<int64_t> sizes(size_t(parts), 0);
  for (int64_t r = 0; r < parts; ++r) sizes[size_t(r)] = chunk_span(n, parts, r).size;
  return sizes;
}

Block local_block(const Shape& global_shape, const Shape& mesh_shape, const std::vector<int64_t>& coordinate,
                  const Placements& placements) {
  check<ValueError>(mesh_shape.size() == placements.size() && coordinate.size() == placements.size(), "local_block",
                    "mesh shape {}, coordinate of {} dims and {} placements must agree", shape_str(mesh_shape),
                    coordinate.size(), placements.size());
  Block block{global_shape, Shape(global_shape.size(), 0)};
  for (size_t m = 0; m < placements.size(); ++m) {
    if (!placements[m].is_shard()) continue;
    check<ShapeError>(placements[m].dim() >= 0 && placements[m].dim() < int64_t(global_shape.size()), "local_block",
                      "{} must be normalized against a tensor with {} dims", placements[m].to_string(),
                      global_shape.size());
    auto d = size_t(placements[m].dim());
    ChunkSpan span = chunk_span(block.shape[d], mesh_shape[m], coordinate[m]);
    block.offset[d] += span.offset;
    block.shape[d] = span.size;
  }
  return block;
}

}  // namespace dtensor
