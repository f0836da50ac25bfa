// How a tensor is laid out over one mesh dimension: Shard(d), Replicate or Partial(op).
// Pure values: no communication, no mesh. Printing follows PyTorch's short forms: S(0), R, P(sum).
#pragma once

#include "collectives/reduce_op.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace dtensor {

class Placement {
 public:
  enum class Kind : uint8_t { Replicate, Shard, Partial };

  static Placement replicate() { return Placement(Kind::Replicate, 0, ReduceOp::Sum); }
  static Placement shard(int64_t dim) { return Placement(Kind::Shard, dim, ReduceOp::Sum); }
  static Placement partial(ReduceOp op = ReduceOp::Sum) { return Placement(Kind::Partial, 0, op); }

  Kind kind() const { return kind_; }
  bool is_replicate() const { return kind_ == Kind::Replicate; }
  bool is_shard() const { return kind_ == Kind::Shard; }
  bool is_shard(int64_t dim) const { return kind_ == Kind::Shard && dim_ == dim; }
  bool is_partial() const { return kind_ == Kind::Partial; }
  int64_t dim() const { return dim_; }        // the tensor dim of a Shard
  ReduceOp reduce_op() const { return op_; }  // the reduction of a Partial

  // Shard(-1) on a 3-D tensor becomes Shard(2); ShapeError if the dim is out of range.
  Placement normalized(int64_t tensor_ndim) const;

  bool operator==(const Placement&) const = default;
  std::string to_string() const;
  size_t hash() const { return (size_t(kind_) << 16) ^ (size_t(op_) << 8) ^ size_t(dim_ + 128); }

 private:
  Placement(Kind kind, int64_t dim, ReduceOp op) : kind_(kind), op_(op), dim_(dim) {}

  Kind kind_;
  ReduceOp op_;
  int64_t dim_;
};

using Placements = std::vector<Placement>;

// Short constructors that read like PyTorch: {Shard(0), Replicate()}.
inline Placement Shard(int64_t dim) { return Placement::shard(dim); }
inline Placement Replicate() { return Placement::replicate(); }
inline Placement Partial(ReduceOp op = ReduceOp::Sum) { return Placement::partial(op); }

std::string placements_str(const Placements& placements);  // "(S(0), R)"
size_t placements_hash(const Placements& placements);

// Checks there is one placement per mesh dim and every Shard dim fits the tensor; returns the
// list with Shard dims made non-negative. Errors name `op`.
Placements normalize_placements(const Placements& placements, int64_t tensor_ndim, int64_t mesh_ndim, const char* op);

}  // namespace dtensor
