// Strategies for packed weights and for mixture-of-experts layers (docs/design.md section 5), the
// Hugging Face names:
//
//   packed_colwise        a Linear whose weight [P*n, in] packs P matrices along its rows (gate_up =
//                         [gate; up]): each rank holds its torch.chunk rows of EVERY part,
//                         [gate_r; up_r], bias alike. Input made replicated; output this rank's
//                         packed columns [gate_r | up_r] as a plain tensor, so a chunk(2, -1) in the
//                         forward splits it into gate_r and up_r, the slice a rowwise down expects.
//   packed_rowwise        a Linear whose weight [out, P*n] packs P matrices along its columns: each
//                         rank holds [a_r | b_r] of the input dim; the input is this rank's packed
//                         slice (a plain tensor; a Replicate DTensor is sliced locally); the partial
//                         output is all-reduced.
//   local_packed_rowwise  parameters as packed_rowwise, no hooks: the output stays a partial sum
//                         until a parent `gather` reduces it.
//   moe_tp_experts        an Experts module: gate_up [E, 2I, H] split on I per packed part, down
//                         [E, H, I] split on I; tokens replicated; each rank computes every
//                         expert's partial output and the block costs ONE all-reduce (the router
//                         stays replicated and communicates nothing).
//
// Why plain tensors: a DTensor Shard(d) describes one contiguous range of dim d per rank, but a
// rank's packed slice is P ranges ([gate_r; up_r]); with uneven parts even its size differs from
// chunk(P*n). So these strategies keep plain local tensors and do the one reduction by hand.
//
// Rowwise bias: the partial sums of all ranks add up to the output, so only the first rank holds
// the bias (the others zeros) and it is added exactly once.
#include "autograd/ops.hpp"
#include "nn/strategy.hpp"
#include "placements/sharding.hpp"
#include "tensor/ops.hpp"

namespace dtensor::nn {

namespace {

constexpr int64_t kGateUpParts = 2;

// Checked when the plan is applied, before anything loads.
void require_module(const Module& m, const std::string& name, const char* type, const char* strategy) {
  check<ValueError>(m.type_name() == type, strategy, "module '{}' is a {}; {} applies to {} modules", name,
                    m.type_name(), strategy, type);
}

// This rank's torch.chunk slice of every one of `parts` equal parts along `dim`, concatenated in
// part order: one box read per part, never the full tensor.
Tensor read_packed_shard(const io::TensorSource& source, int64_t dim, int64_t parts, const DeviceMesh& mesh,
                         const std::string& param, const char* strategy) {
  dim = normalize_dim(dim, int64_t(source.shape.size()), strategy);
  check<ShapeError>(source.shape[size_t(dim)] % parts == 0, strategy,
                    "parameter '{}' of shape {}: dim {} ({}) does not split into {} packed parts", param,
                    shape_str(source.shape), dim, source.shape[size_t(dim)], parts);
  const ChunkSpan span = chunk_span(source.shape[size_t(dim)] / parts, mesh.size(), mesh.coordinate()[0]);
  Shape offset(source.shape.size(), 0), sizes = source.shape;
  offset[size_t(dim)] = span.offset;
  sizes[size_t(dim)] = span.size;
  return source.read_packed(dim, parts, offset, sizes);
}

// The plain share of read_packed_shard: this rank's chunk of each part, one after the other.
PlainShare packed_share(const Shape& full, int64_t dim, int64_t parts, const DeviceMesh& mesh) {
  const int64_t part = full[size_t(dim)] / parts;
  const ChunkSpan span = chunk_span(part, mesh.size(), mesh.coordinate()[0]);
  PlainShare share{false, dim, {}};
  for (int64_t k = 0; k < parts; ++k) share.runs.push_back({k * part + span.offset, k * span.size, span.size});
  return share;
}

// The same slice of a whole tensor every rank holds, through autograd ops, so a graph records
// through it (the input of packed_rowwise).
Tensor packed_slice(const Tensor& whole, int64_t dim, int64_t parts, const DeviceMesh& mesh, const char* strategy) {
  dim = normalize_dim(dim, whole.dim(), strategy);
  check<ShapeError>(whole.size(dim) % parts == 0, strategy,
                    "input of shape {}: dim {} ({}) does not split into {} packed parts", shape_str(whole.shape()), dim,
                    whole.size(dim), parts);
  const int64_t part = whole.size(dim) / parts;
  const ChunkSpan span = chunk_span(part, mesh.size(), mesh.coordinate()[0]);
  std::vector<Tensor> pieces;
  for (int64_t k = 0; k < parts; ++k) pieces.push_back(autograd::narrow(whole, dim, k * part + span.offset, span.size));
  return autograd::cat(pieces, dim);
}

class PackedColwise : public Strategy {
 public:
  void check_plan(const Module& m, const std::string& name, const DeviceMesh&) const override {
    require_module(m, name, "Linear", "packed_colwise");
  }
  Value partition(const Module&, const std::string& param, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    return read_packed_shard(source, 0, kGateUpParts, mesh, param, "packed_colwise");  // weight rows, bias
  }
  PlainShare plain_share(const Module& m, const std::string& param, const DeviceMesh& mesh) const override {
    return packed_share(m.parameter_shape(param), 0, kGateUpParts, mesh);
  }
  Value prepare_input(const Value& x, const Module&, const DeviceMesh& mesh) const override {
    return replicated_for_split(x, mesh);
  }
  bool leaves_output_split() const override { return true; }  // [gate_r | up_r]
};

class PackedRowwise : public Strategy {
 public:
  explicit PackedRowwise(bool hooks) : hooks_(hooks) {}

  void check_plan(const Module& m, const std::string& name, const DeviceMesh&) const override {
    require_module(m, name, "Linear", strategy_name());
  }
  Value partition(const Module&, const std::string& param, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    if (param == "bias") return read_on_first_rank(source, mesh);
    return read_packed_shard(source, 1, kGateUpParts, mesh, param, strategy_name());
  }
  PlainShare plain_share(const Module& m, const std::string& param, const DeviceMesh& mesh) const override {
    return param == "bias" ? PlainShare{} : packed_share(m.parameter_shape(param), 1, kGateUpParts, mesh);
  }
  bool trains_here(const Module&, const std::string& param, const DeviceMesh& mesh) const override {
    return param != "bias" || is_first_rank(mesh);
  }
  Value prepare_input(const Value& x, const Module& m, const DeviceMesh& mesh) const override {
    if (!hooks_) return x;
    const int64_t full_in = m.parameter_shape("weight")[1];
    if (x.is_distributed()) {
      // Only a replicated input can be sliced into the packed layout here.
      const DTensor& d = x.dtensor();
      check<ValueError>(d.placements() == Placements{Replicate()}, "packed_rowwise",
                        "a DTensor input must be Replicate (a Shard cannot hold the packed layout), got {}",
                        placements_str(d.placements()));
      const int64_t last = d.dim() - 1;
      return packed_slice(diverging_local(d), last, kGateUpParts, mesh, "packed_rowwise");
    }
    const int64_t local_in = m.parameter("weight").shape()[1];
    check<ShapeError>(x.shape().back() == local_in, "packed_rowwise",
                      "input's last dim {} is not this rank's packed slice ({} of {})", x.shape().back(), local_in,
                      full_in);
    return x;
  }
  Value prepare_output(const Value& y, const Module&, const DeviceMesh& mesh) const override {
    return hooks_ ? Value(all_reduce_partial(y.tensor("partial output"), mesh)) : y;
  }

 private:
  const char* strategy_name() const { return hooks_ ? "packed_rowwise" : "local_packed_rowwise"; }
  bool hooks_;
};

class MoeTpExperts : public Strategy {
 public:
  void check_plan(const Module& m, const std::string& name, const DeviceMesh&) const override {
    require_module(m, name, "Experts", "moe_tp_experts");
  }
  Value partition(const Module&, const std::string& param, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    if (param == "gate_up") return read_packed_shard(source, 1, kGateUpParts, mesh, param, "moe_tp_experts");
    return read_local_block(source, mesh, {Shard(2)});  // down [E, H, I]: this rank's I columns
  }
  PlainShare plain_share(const Module& m, const std::string& param, const DeviceMesh& mesh) const override {
    if (param == "gate_up") return packed_share(m.parameter_shape(param), 1, kGateUpParts, mesh);
    return block_share(m.parameter_shape(param), 2, mesh);
  }
  Value prepare_input(const Value& x, const Module&, const DeviceMesh& mesh) const override {
    return replicated_for_split(x, mesh);
  }
  Value prepare_output(const Value& y, const Module&, const DeviceMesh& mesh) const override {
    return Value(all_reduce_partial(y.tensor("partial output"), mesh));
  }
};

}  // namespace

// Called once by StrategyRegistry::global() while it builds the built-in set (nn/strategies.cpp).
void register_packed_strategies(StrategyRegistry& registry) {
  registry.add("packed_colwise", std::make_shared<PackedColwise>());
  registry.add("packed_rowwise", std::make_shared<PackedRowwise>(true));
  registry.add("local_packed_rowwise", std::make_shared<PackedRowwise>(false));
  registry.add("moe_tp_experts", std::make_shared<MoeTpExperts>());
}

}  // namespace dtensor::nn
