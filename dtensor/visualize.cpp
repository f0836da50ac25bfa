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
      line.push_back(fmt::format("ranks {}", fmt::join(holders, ",")));
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
  return out;
}

}  // namespace dtensor
