#include "placements/placement.hpp"

#include "tensor/error.hpp"
#include "tensor/tensor.hpp"

namespace dtensor {

Placement Placement::normalized(int64_t tensor_ndim) const {
  if (!is_shard()) return *this;
  return shard(normalize_dim(dim_, tensor_ndim, "Shard"));
}

std::string Placement::to_string() const {
  switch (kind_) {
    case Kind::Replicate:
      return "R";
    case Kind::Shard:
      return fmt::format("S({})", dim_);
    case Kind::Partial:
      return fmt::format("P({})", reduce_op_name(op_));
  }
  return "?";
}

std::string placements_str(const Placements& placements) {
  std::string out = "(";
  for (size_t i = 0; i < placements.size(); ++i) {
    out += (i ? ", " : "") + placements[i].to_string();
  }
  return out + ")";
}

size_t placements_hash(const Placements& placements) {
  size_t h = placements.size();
  for (const Placement& p : placements) h = h * 1000003u ^ p.hash();
  return h;
}

Placements normalize_placements(const Placements& placements, int64_t tensor_ndim, int64_t mesh_ndim, const char* op) {
  check<ValueError>(int64_t(placements.size()) == mesh_ndim, op,
                    "placements {} has {} entries, expected one per mesh dim ({})", placements_str(placements),
                    placements.size(), mesh_ndim);
  Placements out;
  out.reserve(placements.size());
  for (const Placement& p : placements) {
    check<ShapeError>(!p.is_shard() || (p.dim() >= -tensor_ndim && p.dim() < tensor_ndim), op,
                      "placements {}: {} is out of range for a tensor with {} dims", placements_str(placements),
                      p.to_string(), tensor_ndim);
    // The rules of sections 3 and 4 (R -> P, Partial through ops) are written for these four.
    check<ValueError>(!p.is_partial() || p.reduce_op() == ReduceOp::Sum || p.reduce_op() == ReduceOp::Avg ||
                          p.reduce_op() == ReduceOp::Max || p.reduce_op() == ReduceOp::Min,
                      op, "placements {}: {} is not a Partial placement; expected P(sum), P(avg), P(max) or P(min)",
                      placements_str(placements), p.to_string());
    out.push_back(p.normalized(tensor_ndim));
  }
  return out;
}

}  // namespace dtensor
