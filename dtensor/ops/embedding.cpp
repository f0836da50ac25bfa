// Sharding rules of embedding(weight [V, H], ids [...]) -> [..., H].
//
// Per mesh dim, (weight, ids):
//   (R, R) -> R
//   (R, S(d)) -> S(d)            ids split: each rank looks up its own ids
//   (S(1), R) -> S(last)         hidden split: each rank returns its columns
//   (S(0), R) -> P(sum)          vocab-parallel: each rank looks up only the ids in its vocab
//                                range and gives zero rows for the others; exact for uneven
//                                vocab and for ranks holding no rows
//   (P(sum|avg), R) -> the same  a lookup is linear in the weight
// Ids outside [0, V) raise ValueError on every rank: each rank checks the ids it holds and, where
// the ids are sharded, the ranks agree through a two-element all-reduce before anyone throws.
#include "dtensor/ops.hpp"

#include "dtensor/ops/dispatch.hpp"
#include "placements/sharding.hpp"
#include "tensor/ops.hpp"

#include <limits>

namespace dtensor {

namespace {

using detail::ArgInfo;
using detail::DimRule;
using detail::OpDecision;

constexpr const char* kOp = "embedding";

class EmbeddingRules : public detail::OpRules {
 public:
  Shape output_shape(std::span<const ArgInfo> args) const override {
    const Shape& weight = args[0].shape;
    const ArgInfo& ids = args[1];
    check<ShapeError>(weight.size() == 2, kOp, "weight must be 2-D [vocab, hidden], got shape {}", shape_str(weight));
    check<DTypeError>(ids.dtype == DType::I32 || ids.dtype == DType::I64, kOp, "ids must have dtype i32 or i64, got {}",
                      ids.dtype);
    Shape out = ids.shape;
    out.push_back(weight[1]);
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape&) const override {
    const int64_t ids_ndim = int64_t(args[1].shape.size());
    std::vector<DimRule> rules = {{{Shard(1), Replicate()}, Shard(ids_ndim)}, {{Shard(0), Replicate()}, Partial()}};
    for (int64_t d = 0; d < ids_ndim; ++d) rules.push_back({{Replicate(), Shard(d)}, Shard(d)});
    for (const Placement& p : args[0].placements) {
      if (detail::is_linear_partial(p)) rules.push_back({{p, Replicate()}, p});
    }
    return rules;
  }
};

// Throws ValueError on every rank of the mesh when any rank's ids leave [0, vocab). Ranks that
// differ only along mesh dims where the ids are not sharded hold the same ids, so reducing over
// the sharded mesh dims (one after the other) gives every rank the global extremes.
void check_ids(const std::vector<int64_t>& ids, int64_t vocab, const DeviceMesh& mesh, const Placements& ids_layout) {
  // {-min, max}; an empty block contributes {0, -1}, which passes.
  int64_t neg_min = 0, max = -1;
  for (int64_t v : ids) {
    neg_min = std::max(neg_min, v < -std::numeric_limits<int64_t>::max() ? std::numeric_limits<int64_t>::max() : -v);
    max = std::max(max, v);
  }
  Tensor extremes = Tensor::from_vector<int64_t>({neg_min, max}, {2});
  for (int64_t m = 0; m < mesh.ndim(); ++m) {
    if (ids_layout[size_t(m)].is_shard()) mesh.comm(m).all_reduce(extremes, ReduceOp::Max);
  }
  const std::vector<int64_t> agreed = extremes.to_vector<int64_t>();
  check<ValueError>(agreed[0] <= 0, kOp, "ids must lie in [0, {}) (the vocab size), found id {}", vocab, -agreed[0]);
  check<ValueError>(agreed[1] < vocab, kOp, "ids must lie in [0, {}) (the vocab size), found id {}", vocab, agreed[1]);
}

// The lookup of a vocab block [offset, offset + rows) of the weight: ids outside it give zero rows.
Tensor masked_lookup(const Tensor& weight_block, const std::vector<int64_t>& ids, const Shape& ids_shape,
                     int64_t offset) {
  const int64_t rows = weight_block.shape()[0];
  Shape out_shape = ids_shape;
  out_shape.push_back(weight_block.shape()[1]);
  const Device device = weight_block.device();
  if (rows == 0) return Tensor::zeros(out_shape, weight_block.dtype(), device);
  std::vector<int64_t> shifted(ids.size());
  std::vector<uint8_t> outside(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool mine = ids[i] >= offset && ids[i] < offset + rows;
    shifted[i] = mine ? ids[i] - offset : 0;  // any valid row; zeroed below
    outside[i] = mine ? 0 : 1;
  }
  Tensor found = embedding(weight_block, Tensor::from_vector(shifted, ids_shape).to(device));
  Shape mask_shape = ids_shape;
  mask_shape.push_back(1);
  return masked_fill(found, Tensor::from_vector(outside, mask_shape).to(device), 0.0);
}

}  // namespace

DTensor embedding(const DTensor& weight, const DTensor& ids) {
  EmbeddingRules rules;
  return detail::run_op(kOp, {}, {&weight, &ids}, rules, [&](const std::vector<Tensor>& t, const OpDecision& rule) {
    const std::vector<int64_t> local_ids = t[1].to(DType::I64).to_vector<int64_t>();
    const DeviceMesh& mesh = weight.mesh();
    check_ids(local_ids, weight.shape()[0], mesh, rule.inputs[1]);
    bool vocab_split = false;
    for (const Placement& p : rule.inputs[0]) vocab_split = vocab_split || p.is_shard(0);
    if (!vocab_split) return embedding(t[0], t[1]);
    // With several mesh dims splitting the vocab the range is the nested block local_block gives.
    const Block block = local_block(weight.shape(), mesh.shape(), mesh.coordinate(), rule.inputs[0]);
    return masked_lookup(t[0], local_ids, t[1].shape(), block.offset[0]);
  });
}

}  // namespace dtensor
