// Sharding rules of joining and splitting: cat, stack, chunk, split.
//
// Per mesh dim:
//   cat(dim)          every input R -> R; every input S(e), e != dim -> S(e); every input P -> P
//   stack(dim)        every input R -> R; every input S(e) -> S(e >= dim ? e + 1 : e); all P -> P
//   chunk, split      R -> R; S(e), e != dim -> S(e); P -> P, for every piece
// The dim joined or split along must be whole on every rank, so a shard of it is gathered first.
// P means P(sum) or P(avg), the same on every input: these ops only move elements around.
// chunk and split decide once for the input, then take every piece as a local narrow.
#include "dtensor/ops.hpp"

#include "dtensor/ops/dispatch.hpp"
#include "placements/sharding.hpp"
#include "tensor/ops.hpp"

namespace dtensor {

namespace {

using detail::ArgInfo;
using detail::DimRule;
using detail::OpDecision;

// The rules of an op whose inputs keep their shards on every dim but `skip` (the input dim the
// op works along; -1 for none): input dim e becomes output dim e + shift when e >= from.
std::vector<DimRule> keep_shard_rules(size_t inputs, int64_t ndim, int64_t skip, int64_t from, int64_t shift) {
  std::vector<DimRule> rules;
  for (int64_t e = 0; e < ndim; ++e) {
    if (e != skip) rules.push_back({std::vector<Placement>(inputs, Shard(e)), Shard(e >= from ? e + shift : e)});
  }
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
    rules.push_back({std::vector<Placement>(inputs, Partial(op)), Partial(op)});
  }
  return rules;
}

// Inputs of cat and stack: same dtype and rank; every dim but `except` (-1: none) equal.
void check_joinable(std::span<const ArgInfo> args, int64_t except, const char* op) {
  const Shape& first = args[0].shape;
  for (size_t i = 1; i < args.size(); ++i) {
    check<DTypeError>(args[i].dtype == args[0].dtype, op, "tensors[{}] has dtype {}, expected {} like tensors[0]", i,
                      args[i].dtype, args[0].dtype);
    const Shape& s = args[i].shape;
    check<ShapeError>(s.size() == first.size(), op, "tensors[{}] has {} dims (shape {}), tensors[0] has {} (shape {})",
                      i, s.size(), shape_str(s), first.size(), shape_str(first));
    for (size_t d = 0; d < s.size(); ++d) {
      check<ShapeError>(int64_t(d) == except || s[d] == first[d], op,
                        "tensors[{}] has shape {}, which differs from tensors[0]'s {} in dim {}", i, shape_str(s),
                        shape_str(first), d);
    }
  }
}

class CatRules : public detail::OpRules {
 public:
  explicit CatRules(int64_t dim) : dim_(dim) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    check_joinable(args, dim_, "cat");
    Shape out = args[0].shape;
    out[size_t(dim_)] = 0;
    for (const ArgInfo& a : args) out[size_t(dim_)] += a.shape[size_t(dim_)];
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape& out) const override {
    return keep_shard_rules(args.size(), int64_t(out.size()), dim_, 0, 0);
  }

 private:
  int64_t dim_;
};

class StackRules : public detail::OpRules {
 public:
  explicit StackRules(int64_t dim) : dim_(dim) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    check_joinable(args, -1, "stack");
    Shape out = args[0].shape;
    out.insert(out.begin() + dim_, int64_t(args.size()));
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape&) const override {
    return keep_shard_rules(args.size(), int64_t(args[0].shape.size()), -1, dim_, 1);
  }

 private:
  int64_t dim_;
};

// chunk and split: the input's layout, with `dim` whole.
class SplitRules : public detail::OpRules {
 public:
  explicit SplitRules(int64_t dim) : dim_(dim) {}
  Shape output_shape(std::span<const ArgInfo> args) const override { return args[0].shape; }
  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape&) const override {
    return keep_shard_rules(1, int64_t(args[0].shape.size()), dim_, 0, 0);
  }

 private:
  int64_t dim_;
};

std::vector<const DTensor*> pointers(const std::vector<DTensor>& tensors, const char* op) {
  check<ValueError>(!tensors.empty(), op, "needs at least one tensor, got none");
  std::vector<const DTensor*> out;
  for (const DTensor& t : tensors) out.push_back(&t);
  return out;
}

// Joins the prepared local blocks along `dim` (stack: along a new dim).
DTensor join(const char* op, const std::vector<DTensor>& tensors, int64_t dim, const detail::OpRules& rules,
             bool new_dim) {
  std::vector<const DTensor*> inputs = pointers(tensors, op);
  const OpDecision& decision = detail::decide(op, {dim}, inputs, rules);
  std::vector<Tensor> locals = detail::prepared_locals(op, inputs, decision);
  if (new_dim) {
    for (Tensor& t : locals) t = t.unsqueeze(dim);
  }
  return detail::wrap_output(cat(locals, dim), tensors[0], decision);
}

// The pieces of `a` along `dim` with the given sizes: one decision for the input, then local
// narrows at GLOBAL offsets (`dim` is whole on every rank under every SplitRules rule).
std::vector<DTensor> split_pieces(const char* op, const DTensor& a, int64_t dim, const std::vector<int64_t>& sizes) {
  SplitRules rules(dim);
  const DTensor* inputs[] = {&a};
  const OpDecision& decision = detail::decide(op, {dim}, inputs, rules);
  const Tensor local = detail::prepared_locals(op, inputs, decision)[0];
  std::vector<DTensor> pieces;
  int64_t start = 0;
  for (int64_t size : sizes) {
    Shape shape = a.shape();
    shape[size_t(dim)] = size;
    pieces.push_back(detail::wrap_output(local.narrow(dim, start, size), a, decision.output, shape));
    start += size;
  }
  return pieces;
}

}  // namespace

DTensor cat(const std::vector<DTensor>& tensors, int64_t dim) {
  const char* op = "cat";
  check<ValueError>(!tensors.empty(), op, "needs at least one tensor, got none");
  const int64_t d = normalize_dim(dim, tensors[0].dim(), op);
  return join(op, tensors, d, CatRules(d), false);
}

DTensor stack(const std::vector<DTensor>& tensors, int64_t dim) {
  const char* op = "stack";
  check<ValueError>(!tensors.empty(), op, "needs at least one tensor, got none");
  const int64_t d = normalize_dim(dim, tensors[0].dim() + 1, op);  // the new dim may come last
  return join(op, tensors, d, StackRules(d), true);
}

std::vector<DTensor> chunk(const DTensor& a, int64_t chunks, int64_t dim) {
  const char* op = "chunk";
  check<ValueError>(chunks > 0, op, "chunks must be positive, got {}", chunks);
  const int64_t d = normalize_dim(dim, a.dim(), op);
  // torch.chunk: pieces of ceil(n / chunks); it returns fewer pieces rather than empty trailing
  // ones, except for an empty dim, which gives `chunks` empty pieces.
  const int64_t n = a.shape()[size_t(d)];
  std::vector<int64_t> sizes = chunk_sizes(n, chunks);
  if (n > 0) {
    while (sizes.back() == 0) sizes.pop_back();
  }
  return split_pieces(op, a, d, sizes);
}

std::vector<DTensor> split(const DTensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  const char* op = "split";
  const int64_t d = normalize_dim(dim, a.dim(), op);
  int64_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    check<ValueError>(sizes[i] >= 0, op, "sizes[{}] must be non-negative, got {}", i, sizes[i]);
    total += sizes[i];
  }
  check<ShapeError>(total == a.shape()[size_t(d)], op, "sizes {} must sum to the size {} of dim {} (shape {}), got {}",
                    shape_str(sizes), a.shape()[size_t(d)], dim, shape_str(a.shape()), total);
  return split_pieces(op, a, d, sizes);
}

}  // namespace dtensor
