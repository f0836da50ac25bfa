// Test helper: every list of placements over the dims of a mesh, one choice per mesh dim.
#pragma once

#include "placements/placement.hpp"

#include <vector>

namespace dtensor::testing {

// All mesh_ndim-long lists drawn from `choices`, skipping Shard dims that do not fit a tensor
// with tensor_ndim dims. Negative Shard dims stay as given (callers test the normalization).
inline std::vector<Placements> placement_lists(size_t mesh_ndim, const std::vector<Placement>& choices,
                                               int64_t tensor_ndim) {
  std::vector<Placements> lists = {{}};
  for (size_t m = 0; m < mesh_ndim; ++m) {
    std::vector<Placements> next;
    for (const Placements& list : lists) {
      for (const Placement& p : choices) {
        if (p.is_shard() && (p.dim() >= tensor_ndim || p.dim() < -tensor_ndim)) continue;
        Placements extended = list;
        extended.push_back(p);
        next.push_back(extended);
      }
    }
    lists = std::move(next);
  }
  return lists;
}

}  // namespace dtensor::testing
