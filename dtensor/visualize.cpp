// visualize_sharding: which mesh ranks hold which block of a 1-D or 2-D DTensor, as a table.
//
// Computed from the placements alone (no communication): the cut points of every rank's block
// split the tensor into cells, and each cell lists the ranks that hold it.
#include "dtensor/dtensor.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <set>

namespace dtensor {

namespace {

std::vector<int64_t> sorted_cuts(const std::set<int64_t>& cuts) { return {cuts.begin(), cuts.end()}; }

// "rank 2" or "ranks 0,1".
std::string ranks_label(const std::vector<int>& ranks) {
  return fmt::format("{} {}", ranks.size() == 1 ? "rank" : "ranks", fmt::join(ranks, ","));
}

// The ranks whose block has no element (torch.chunk leaves trailing ranks short or empty), which
// appear in no cell: a line saying so, or nothing.
std::string empty_blocks_line(const DeviceMesh& mesh, const std::vector<Block>& blocks) {
  std::vector<int> empty;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].shape[0] * blocks[i].shape[1] == 0) empty.push_back(mesh.ranks()[i]);
  }
  if (empty.empty()) return "";
  return fmt::format("{} {} an empty block\n", ranks_label(empty), empty.size() == 1 ? "holds" : "hold");
}

}  // namespace

std::string visualize_sharding(const DTensor& tensor) {
  check<ShapeError>(tensor.dim() == 1 || tensor.dim() == 2, "visualize_sharding",
                    "only 1-D and 2-D tensors are drawn, got {} dims", tensor.dim());
  const DeviceMesh& mesh = tensor.mesh();
  const Shape global = tensor.dim() == 1 ? Shape{1, tensor.shape()[0]} : tensor.shape();
  std::vector<Block> blocks;
  std::set<int64_t> row_cuts = {0, global[0]}, col_cuts = {0, global[1]};
  for (int rank : mesh.ranks()) {
    Block b = local_block(tensor.shape(), mesh.shape(), mesh.coordinate_of(rank), tensor.placements());
    if (tensor.dim() == 1) b = {{1, b.shape[0]}, {0, b.offset[0]}};
    row_cuts.insert({b.offset[0], b.offset[0] + b.shape[0]});
    col_cuts.insert({b.offset[1], b.offset[1] + b.shape[1]});
    blocks.push_back(b);
  }
  auto rows = sorted_cuts(row_cuts), cols = sorted_cuts(col_cuts);

  // One grid cell per pair of non-empty row and column intervals: the ranks holding it.
  std::vector<std::string> header = {""};
  for (size_t c = 0; c + 1 < cols.size(); ++c) header.push_back(fmt::format("[{}, {})", cols[c], cols[c + 1]));
  std::vector<std::vector<std::string>> grid = {header};
  for (size_t r = 0; r + 1 < rows.size(); ++r) {
    std::vector<std::string> line = {tensor.dim() == 1 ? "" : fmt::format("[{}, {})", rows[r], rows[r + 1])};
    for (size_t c = 0; c + 1 < cols.size(); ++c) {
      std::vector<int> holders;
      for (size_t i = 0; i < blocks.size(); ++i) {
        const Block& b = blocks[i];
        if (b.offset[0] <= rows[r] && rows[r] < b.offset[0] + b.shape[0] && b.offset[1] <= cols[c] &&
            cols[c] < b.offset[1] + b.shape[1]) {
          holders.push_back(mesh.ranks()[i]);
        }
      }
      line.push_back(ranks_label(holders));
    }
    grid.push_back(line);
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& line : grid)
    for (size_t c = 0; c < line.size(); ++c) width[c] = std::max(width[c], line[c].size());

  std::string out =
      fmt::format("{} {} on mesh {} with {}\n", tensor.dim() == 1 ? "1-D" : "2-D", shape_str(tensor.shape()),
                  shape_str(mesh.shape()), placements_str(tensor.placements()));
  for (const auto& line : grid) {
    for (size_t c = 0; c < line.size(); ++c) out += fmt::format("| {:<{}} ", line[c], width[c]);
    out += "|\n";
  }
  return out + empty_blocks_line(mesh, blocks);
}

}  // namespace dtensor
