// The built-in strategies of docs/design.md section 5, for Linear (weight [out, in], bias [out]),
// Embedding (weight [vocab, hidden]) and modules with replicated parameters.
//
//   colwise       weight rows / bias split; input made Replicate; output stays split on the last
//                 dim as a plain local tensor.            (Embedding: weight split by hidden)
//   rowwise       weight columns split, bias Replicate (added once, after the reduction); input
//                 split on its last dim; output all-reduced to Replicate.
//                 (Embedding: vocab-parallel, weight rows split, masked lookup, all-reduce)
//   colwise_rep   as colwise, output all-gathered to Replicate.
//   rowwise_rep   as rowwise, input Replicate and sliced locally.
//   replicate     parameters Replicate; input and output plain.
//   local_colwise, local_rowwise   parameters as colwise / rowwise but plain local tensors, no
//                 forward hooks; a local_rowwise result is a partial sum (its bias is held by the
//                 first rank only) until a parent `gather` all-reduces it. In backward,
//                 local_colwise all-reduces its input's gradient (each rank's is one summand).
//   local         parameters whole and plain, no hooks (isolated modules).
//   gather        parameters whole and plain; the module's (partial) output is all-reduced.
//   sequence_parallel   parameters Replicate; input split on the sequence dim (-2), output left
//                 split there as a DTensor (the next colwise all-gathers it).
//   rowwise_to_sequence   as rowwise, but the partial output is reduce-scattered over the sequence
//                 dim: with sequence_parallel norms and colwise inputs, a block costs one
//                 all_gather and one reduce_scatter, the same bytes as plain TP's all_reduce.
//
// Attention heads: on a Linear that declared heads (Linear::set_heads) colwise, rowwise,
// rowwise_to_sequence, local_colwise and local_rowwise split whole heads (nn/head_sharding.hpp).
// Where that split is torch.chunk's (the heads divide by the TP size) nothing changes; otherwise
// the parameters are plain local tensors of this rank's heads: colwise makes its input a plain
// replicated tensor and returns plain local heads; rowwise takes this rank's head columns (plain,
// or sliced from a replicated DTensor), holds the bias on the first rank only (zeros elsewhere),
// and all-reduces the plain partial output through from_local(Partial). colwise_rep and
// rowwise_rep gather / reduce the whole output, so head boundaries do not matter there: they
// keep torch.chunk.
#include "nn/strategy.hpp"

#include "autograd/ops.hpp"
#include "nn/head_sharding.hpp"
#include "nn/layers.hpp"

namespace dtensor::nn {

namespace {

bool is_embedding(const Module& m) { return m.type_name() == "Embedding"; }

// Attention heads ------------------------------------------------------------------------------

// The head layout of a Linear whose heads lie along the dim the strategy splits: the weight rows
// for colwise (q, k, v projections), the columns for rowwise (o projection); nullptr otherwise.
const Linear::HeadLayout* split_heads(const Module& m, bool rowwise) {
  const auto* linear = dynamic_cast<const Linear*>(&m);
  if (linear == nullptr || !linear->heads()) return nullptr;
  const bool columns = linear->heads()->role == HeadRole::Output;
  return columns == rowwise ? &*linear->heads() : nullptr;
}

// The Linear and Embedding strategies split a 2-D weight; on another module (a norm, a container)
// they would split whatever it holds along the wrong dims, a silently wrong model.
void check_splits_matrix(const Module& m, const std::string& name, const char* strategy) {
  check<ValueError>(m.has_parameter("weight") && m.parameter_shape("weight").size() == 2, strategy,
                    "module '{}' ({}) has no 2-D weight; {} splits Linear and Embedding modules", name, m.type_name(),
                    strategy);
}

void check_head_plan(const Module& m, const std::string& name, const DeviceMesh& mesh, bool rowwise) {
  if (const Linear::HeadLayout* h = split_heads(m, rowwise)) check_head_split(h->heads, mesh.size(), name);
}

// Whether this rank's heads are not a torch.chunk block, so the parameters are plain local tensors.
bool heads_uneven(const Module& m, bool rowwise, const DeviceMesh& mesh) {
  const Linear::HeadLayout* h = split_heads(m, rowwise);
  return h != nullptr && !heads_split_like_chunk(h->heads, h->role, mesh.size());
}

// This rank's heads of the projection `m` (rows, or columns for rowwise) as [begin, end) features.
HeadRange rank_head_features(const Module& m, bool rowwise, const DeviceMesh& mesh) {
  const Linear::HeadLayout& h = *split_heads(m, rowwise);
  HeadRange heads = rank_heads(h.heads, mesh.size(), mesh.coordinate()[0]).of(h.role);
  return {heads.begin * h.heads.head_dim, heads.end * h.heads.head_dim};
}

// This rank's heads of `source` along `dim` (0: rows, 1: columns), one box read, a plain tensor.
Tensor read_rank_heads(const Module& m, const io::TensorSource& source, int64_t dim, const DeviceMesh& mesh) {
  HeadRange features = rank_head_features(m, dim == 1, mesh);
  Shape offset(source.shape.size(), 0), sizes = source.shape;
  offset[size_t(dim)] = features.begin;
  sizes[size_t(dim)] = features.count();
  return source.read(offset, sizes);
}

// The plain share of read_rank_heads along dim 0 (rows) or 1 (columns, rowwise): this rank's heads
// that no lower rank holds (ranks hold increasing head ranges; a shared KV head is the lowest's).
PlainShare head_share(const Module& m, bool rowwise, const DeviceMesh& mesh) {
  const Linear::HeadLayout& h = *split_heads(m, rowwise);
  const int64_t tp = mesh.size(), rank = mesh.coordinate()[0];
  const HeadRange mine = rank_heads(h.heads, tp, rank).of(h.role);
  const int64_t first = rank == 0 ? mine.begin : std::max(mine.begin, rank_heads(h.heads, tp, rank - 1).of(h.role).end);
  const int64_t d = h.heads.head_dim;
  return {false, rowwise ? 1 : 0, {{first * d, (first - mine.begin) * d, std::max<int64_t>(mine.end - first, 0) * d}}};
}

// Plain input -> DTensor with `placements` (global shape given); a DTensor is redistributed.
Value as_dtensor(const Value& x, const DeviceMesh& mesh, const Placements& placements, const Shape& global) {
  if (x.is_distributed()) return x.dtensor().redistribute(placements);
  return DTensor::from_local(x.tensor(), mesh, placements, global);
}

Value replicated_input(const Value& x, const DeviceMesh& mesh) { return as_dtensor(x, mesh, {Replicate()}, x.shape()); }

// This rank's block as a plain tensor (to_local, so that a graph records through it).
Value local_block_of(const Value& y) { return y.is_distributed() ? y.dtensor().to_local() : y.tensor(); }

// Back to a plain tensor once the layout is `target`.
Value plain(const Value& y, const Placements& target) {
  if (!y.is_distributed()) return y;
  return y.dtensor().placements() == target ? y.dtensor().to_local() : y.dtensor().redistribute(target).to_local();
}

class Colwise : public Strategy {
 public:
  explicit Colwise(bool gather_output) : gather_output_(gather_output) {}

  void check_plan(const Module& m, const std::string& name, const DeviceMesh& mesh) const override {
    check_splits_matrix(m, name, gather_output_ ? "colwise_rep" : "colwise");
    if (!gather_output_) check_head_plan(m, name, mesh, /*rowwise=*/false);
  }
  Value partition(const Module& m, const std::string& param, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    if (head_granular(m, mesh)) return read_rank_heads(m, source, 0, mesh);
    // Linear weight rows and bias, or the hidden columns of an embedding table.
    Placement split = is_embedding(m) ? Shard(1) : Shard(0);
    return read_sharded(source, mesh, {param == "bias" ? Shard(0) : split});
  }
  PlainShare plain_share(const Module& m, const std::string&, const DeviceMesh& mesh) const override {
    return head_granular(m, mesh) ? head_share(m, /*rowwise=*/false, mesh) : PlainShare{};
  }
  Value prepare_input(const Value& x, const Module& m, const DeviceMesh& mesh) const override {
    if (head_granular(m, mesh)) return replicated_for_split(x, mesh);
    return replicated_input(x, mesh);
  }
  Value prepare_output(const Value& y, const Module&, const DeviceMesh&) const override {
    if (gather_output_) return plain(y, {Replicate()});
    return local_block_of(y);  // this rank's columns
  }
  bool leaves_output_split() const override { return !gather_output_; }

 private:
  bool head_granular(const Module& m, const DeviceMesh& mesh) const {
    return !gather_output_ && heads_uneven(m, /*rowwise=*/false, mesh);
  }
  bool gather_output_;
};

class Rowwise : public Strategy {
 public:
  // to_sequence: the partial output is reduce-scattered over the sequence dim (-2) and stays a
  // DTensor, instead of all-reduced to a plain replicated tensor.
  Rowwise(bool replicated_input, bool to_sequence) : replicated_input_(replicated_input), to_sequence_(to_sequence) {}

  void check_plan(const Module& m, const std::string& name, const DeviceMesh& mesh) const override {
    check_splits_matrix(m, name, replicated_input_ ? "rowwise_rep" : to_sequence_ ? "rowwise_to_sequence" : "rowwise");
    if (!replicated_input_) check_head_plan(m, name, mesh, /*rowwise=*/true);
  }
  Value partition(const Module& m, const std::string& param, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    if (head_granular(m, mesh))
      return param == "bias" ? read_on_first_rank(source, mesh) : read_rank_heads(m, source, 1, mesh);
    if (param == "bias") return read_sharded(source, mesh, {Replicate()});
    return read_sharded(source, mesh, {is_embedding(m) ? Shard(0) : Shard(1)});
  }
  PlainShare plain_share(const Module& m, const std::string& param, const DeviceMesh& mesh) const override {
    return param != "bias" && head_granular(m, mesh) ? head_share(m, /*rowwise=*/true, mesh) : PlainShare{};
  }
  bool trains_here(const Module& m, const std::string& param, const DeviceMesh& mesh) const override {
    return param != "bias" || !head_granular(m, mesh) || is_first_rank(mesh);
  }
  Value prepare_input(const Value& x, const Module& m, const DeviceMesh& mesh) const override {
    if (head_granular(m, mesh)) {
      if (!x.is_distributed()) return x;  // already this rank's head columns (attention on its heads)
      HeadRange cols = rank_head_features(m, /*rowwise=*/true, mesh);
      Tensor full = diverging_local(x.dtensor().redistribute({Replicate()}));
      return autograd::narrow(full, full.dim() - 1, cols.begin, cols.count());
    }
    if (is_embedding(m) || (replicated_input_ && !x.is_distributed())) {
      Value r = replicated_input(x, mesh);
      return is_embedding(m) ? r : Value(r.dtensor().redistribute({Shard(-1)}));  // a local slice
    }
    // A plain input is this rank's slice of the last dim; the weight knows the full width.
    Shape global = x.shape();
    if (!x.is_distributed()) global.back() = m.parameter_shape("weight")[1];
    return as_dtensor(x, mesh, {Shard(int64_t(global.size()) - 1)}, global);
  }
  Value prepare_output(const Value& y, const Module&, const DeviceMesh& mesh) const override {
    // Head-granular parameters give a plain partial sum; the DTensor API reduces it all the same.
    Value partial = y.is_distributed() ? y : Value(DTensor::from_local(y.tensor(), mesh, {Partial()}, y.shape()));
    if (!to_sequence_) return plain(partial, {Replicate()});
    const DTensor& out = partial.dtensor("rowwise_to_sequence");
    return out.redistribute({Shard(out.dim() - 2)});
  }

 private:
  bool head_granular(const Module& m, const DeviceMesh& mesh) const {
    return !replicated_input_ && heads_uneven(m, /*rowwise=*/true, mesh);
  }
  bool replicated_input_;
  bool to_sequence_;
};

class Replicated : public Strategy {
 public:
  Value partition(const Module&, const std::string&, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    return read_sharded(source, mesh, {Replicate()});
  }
  Value prepare_input(const Value& x, const Module&, const DeviceMesh& mesh) const override {
    return replicated_input(x, mesh);
  }
  Value prepare_output(const Value& y, const Module&, const DeviceMesh&) const override {
    return plain(y, {Replicate()});
  }
};

class LocalColwise : public Strategy {
 public:
  bool leaves_output_split() const override { return true; }  // this rank's columns
  // Nothing in the forward; in backward the input's gradient, one summand per rank, is summed.
  Value prepare_input(const Value& x, const Module&, const DeviceMesh& mesh) const override {
    return replicated_for_split(x, mesh);
  }
  void check_plan(const Module& m, const std::string& name, const DeviceMesh& mesh) const override {
    check_splits_matrix(m, name, "local_colwise");
    check_head_plan(m, name, mesh, /*rowwise=*/false);
  }
  Value partition(const Module& m, const std::string& param, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    if (heads_uneven(m, /*rowwise=*/false, mesh)) return read_rank_heads(m, source, 0, mesh);
    return read_local_block(source, mesh, {param == "bias" || !is_embedding(m) ? Shard(0) : Shard(1)});
  }
  PlainShare plain_share(const Module& m, const std::string& param, const DeviceMesh& mesh) const override {
    if (heads_uneven(m, /*rowwise=*/false, mesh)) return head_share(m, /*rowwise=*/false, mesh);
    return block_share(m.parameter_shape(param), param == "bias" || !is_embedding(m) ? 0 : 1, mesh);
  }
};

class LocalRowwise : public Strategy {
 public:
  void check_plan(const Module& m, const std::string& name, const DeviceMesh& mesh) const override {
    check_splits_matrix(m, name, "local_rowwise");
    check_head_plan(m, name, mesh, /*rowwise=*/true);
  }
  Value partition(const Module& m, const std::string& param, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    // The partial sums of all ranks add up to the output: only the first rank adds the bias.
    if (param == "bias") return read_on_first_rank(source, mesh);
    if (heads_uneven(m, /*rowwise=*/true, mesh)) return read_rank_heads(m, source, 1, mesh);
    return read_local_block(source, mesh, {is_embedding(m) ? Shard(0) : Shard(1)});
  }
  PlainShare plain_share(const Module& m, const std::string& param, const DeviceMesh& mesh) const override {
    if (param == "bias") return {};
    if (heads_uneven(m, /*rowwise=*/true, mesh)) return head_share(m, /*rowwise=*/true, mesh);
    return block_share(m.parameter_shape(param), is_embedding(m) ? 0 : 1, mesh);
  }
  bool trains_here(const Module&, const std::string& param, const DeviceMesh& mesh) const override {
    return param != "bias" || is_first_rank(mesh);
  }
};

class Local : public Strategy {
 public:
  Value partition(const Module&, const std::string&, const io::TensorSource& source, const DeviceMesh&) const override {
    return source.read_all();
  }
};

class Gather : public Local {
 public:
  Value prepare_output(const Value& y, const Module&, const DeviceMesh& mesh) const override {
    if (y.is_distributed()) return plain(y, {Replicate()});
    return all_reduce_partial(y.tensor(), mesh);
  }
};

class SequenceParallel : public Replicated {
 public:
  Value prepare_input(const Value& x, const Module&, const DeviceMesh& mesh) const override {
    check<ShapeError>(x.shape().size() >= 2, "sequence_parallel", "input needs a sequence dim (-2), got shape {}",
                      shape_str(x.shape()));
    const int64_t seq = int64_t(x.shape().size()) - 2;
    if (x.is_distributed()) return x.dtensor().redistribute({Shard(seq)});
    // The local sequence lengths may be uneven: infer the global length exactly (one all-reduce).
    return DTensor::from_local(x.tensor(), mesh, {Shard(seq)}, std::nullopt, /*check=*/true);
  }
  Value prepare_output(const Value& y, const Module&, const DeviceMesh&) const override { return y; }
};

}  // namespace

void register_packed_strategies(StrategyRegistry& registry);  // nn/strategies_packed.cpp

StrategyRegistry& StrategyRegistry::global() {
  static StrategyRegistry registry = [] {
    StrategyRegistry r;
    r.add("colwise", std::make_shared<Colwise>(false));
    r.add("colwise_rep", std::make_shared<Colwise>(true));
    r.add("rowwise", std::make_shared<Rowwise>(false, false));
    r.add("rowwise_rep", std::make_shared<Rowwise>(true, false));
    r.add("rowwise_to_sequence", std::make_shared<Rowwise>(false, true));
    r.add("replicate", std::make_shared<Replicated>());
    r.add("local_colwise", std::make_shared<LocalColwise>());
    r.add("local_rowwise", std::make_shared<LocalRowwise>());
    r.add("local", std::make_shared<Local>());
    r.add("gather", std::make_shared<Gather>());
    r.add("sequence_parallel", std::make_shared<SequenceParallel>());
    register_packed_strategies(r);
    return r;
  }();
  return registry;
}

}  // namespace dtensor::nn
