// Sharding rules of view ops: transpose, permute, narrow, reshape / view / flatten.
//
// Per mesh dim:
//   transpose, permute   S(d) -> S(the output dim d moves to), R -> R, P -> P
//   narrow(dim)          R -> R, S(e) -> S(e) for e != dim, P -> P; a sharded `dim` is gathered
//   reshape              the input and output dims fall into groups (runs of dims with equal
//                        products); S(d) -> S(o) when d leads its group and o leads the group's
//                        output dims, R -> R, P -> P; any other sharded dim is gathered
// P means P(sum) or P(avg): these ops are linear, so they commute with the partial reduction.
#include "dtensor/ops.hpp"

#include "dtensor/ops/dispatch.hpp"
#include "tensor/ops.hpp"

#include <numeric>

namespace dtensor {

namespace {

using detail::ArgInfo;
using detail::DimRule;
using detail::OpDecision;

void add_linear_partial_rules(std::vector<DimRule>& rules) {
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) rules.push_back({{Partial(op)}, Partial(op)});
}

// Output dim i reads input dim perm[i].
class PermuteRules : public detail::OpRules {
 public:
  explicit PermuteRules(std::vector<int64_t> perm) : perm_(std::move(perm)) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    const Shape& in = args[0].shape;
    Shape out;
    for (int64_t d : perm_) out.push_back(in[size_t(d)]);
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo>, const Shape&) const override {
    std::vector<DimRule> rules;
    for (size_t i = 0; i < perm_.size(); ++i) rules.push_back({{Shard(perm_[i])}, Shard(int64_t(i))});
    add_linear_partial_rules(rules);
    return rules;
  }

 private:
  std::vector<int64_t> perm_;
};

// Validates `dims` as a permutation of the input's dims (negative dims count from the end).
std::vector<int64_t> normalized_permutation(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  check<ShapeError>(int64_t(dims.size()) == ndim, op, "dims {} must name each of the {} dims once", shape_str(dims),
                    ndim);
  std::vector<int64_t> perm;
  std::vector<bool> seen(size_t(ndim), false);
  for (int64_t d : dims) {
    const int64_t n = normalize_dim(d, ndim, op);
    check<ShapeError>(!seen[size_t(n)], op, "dims {} repeat dim {}", shape_str(dims), d);
    seen[size_t(n)] = true;
    perm.push_back(n);
  }
  return perm;
}

DTensor permute_impl(const char* op, const DTensor& a, std::vector<int64_t> perm) {
  PermuteRules rules(perm);
  const DTensor* inputs[] = {&a};
  const OpDecision& decision = detail::decide(op, std::span<const int64_t>(perm), inputs, rules);
  std::vector<Tensor> locals = detail::prepared_locals(op, inputs, decision);
  return detail::wrap_output(locals[0].permute(perm), a, decision);
}

class NarrowRules : public detail::OpRules {
 public:
  NarrowRules(int64_t dim, int64_t start, int64_t length) : dim_(dim), start_(start), length_(length) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    Shape out = args[0].shape;
    const int64_t n = out[size_t(dim_)];
    check<ShapeError>(start_ >= 0 && length_ >= 0 && start_ + length_ <= n, "narrow",
                      "start {} + length {} exceeds size {} of dim {} (shape {})", start_, length_, n, dim_,
                      shape_str(args[0].shape));
    out[size_t(dim_)] = length_;
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape&) const override {
    std::vector<DimRule> rules;
    for (int64_t e = 0; e < int64_t(args[0].shape.size()); ++e) {
      if (e != dim_) rules.push_back({{Shard(e)}, Shard(e)});
    }
    add_linear_partial_rules(rules);
    return rules;
  }

 private:
  int64_t dim_, start_, length_;
};

// Reshape ----------------------------------------------------------------------------------------

// Input dims [in_begin, in_end) hold the same elements as output dims [out_begin, out_end).
struct DimGroup {
  size_t in_begin, in_end, out_begin, out_end;
};

// Groups of a reshape between shapes with equal, non-zero numel. A size-1 dim at the start of a
// group gets a group of its own, so that a group always starts with a dim > 1 on both sides.
std::vector<DimGroup> reshape_groups(const Shape& in, const Shape& out) {
  std::vector<DimGroup> groups;
  size_t i = 0, j = 0;
  while (i < in.size() || j < out.size()) {
    if (i < in.size() && in[i] == 1) {
      groups.push_back({i, i + 1, j, j});
      ++i;
    } else if (j < out.size() && out[j] == 1) {
      groups.push_back({i, i, j, j + 1});
      ++j;
    } else {
      const size_t i0 = i, j0 = j;
      int64_t pi = in[i++], pj = out[j++];
      while (pi != pj) {
        if (pi < pj)
          pi *= in[i++];
        else
          pj *= out[j++];
      }
      groups.push_back({i0, i, j0, j});
    }
  }
  return groups;
}

// Product of the sizes of the mesh dims that shard tensor dim `d` under `placements`.
int64_t shard_count(const Placements& placements, const Shape& mesh_shape, int64_t d) {
  int64_t k = 1;
  for (size_t m = 0; m < placements.size(); ++m) {
    if (placements[m].is_shard(d)) k *= mesh_shape[m];
  }
  return k;
}

class ReshapeRules : public detail::OpRules {
 public:
  explicit ReshapeRules(Shape target) : target_(std::move(target)) {}

  Shape output_shape(std::span<const ArgInfo>) const override { return target_; }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape& out) const override {
    std::vector<DimRule> rules;
    // An empty tensor has nothing to move; it keeps the all-Replicate and Partial rules only.
    if (shape_numel(out) > 0) {
      for (const DimGroup& g : reshape_groups(args[0].shape, out)) {
        if (g.in_begin == g.in_end || g.out_begin == g.out_end) continue;
        rules.push_back({{Shard(int64_t(g.in_begin))}, Shard(int64_t(g.out_begin))});
      }
    }
    add_linear_partial_rules(rules);
    return rules;
  }

  // A group's leading dim, split over k ranks, holds contiguous equal runs of the merged group
  // only when k divides it; and those runs are the torch.chunk pieces of the output's leading
  // dim only when k divides that too. E.g. [4, 3] -> [2, 6] over 4 ranks: each rank holds one
  // input row of 3 elements, but S(0) of [2, 6] gives a row of 6 to ranks 0 and 1 and nothing to
  // the others. k counts every mesh dim sharding the dim (nested splits multiply).
  bool accept(std::span<const ArgInfo> args, const OpDecision& rule, const Shape& mesh_shape) const override {
    const Shape& in = args[0].shape;
    for (size_t m = 0; m < rule.inputs[0].size(); ++m) {
      const Placement& p = rule.inputs[0][m];
      if (!p.is_shard()) continue;
      const int64_t k = shard_count(rule.inputs[0], mesh_shape, p.dim());
      const int64_t o = rule.output[m].dim();
      if (in[size_t(p.dim())] % k != 0 || target_[size_t(o)] % k != 0) return false;
    }
    return true;
  }

 private:
  Shape target_;
};

// `shape` with its -1 (at most one) inferred so that it holds `numel` elements.
Shape infer_shape(const Shape& shape, const Shape& from, const char* op) {
  const int64_t numel = shape_numel(from);
  Shape out = shape;
  int64_t inferred = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      check<ShapeError>(inferred < 0, op, "shape {} has more than one -1", shape_str(shape));
      inferred = int64_t(i);
    } else {
      check<ShapeError>(shape[i] >= 0, op, "shape {} has a negative size {}", shape_str(shape), shape[i]);
      known *= shape[i];
    }
  }
  if (inferred >= 0) {
    check<ShapeError>(known > 0 && numel % known == 0, op, "shape {} cannot hold the {} elements of shape {}",
                      shape_str(shape), numel, shape_str(from));
    out[size_t(inferred)] = numel / known;
  }
  check<ShapeError>(shape_numel(out) == numel, op, "shape {} has {} elements but the input {} has {}", shape_str(shape),
                    shape_numel(out), shape_str(from), numel);
  return out;
}

DTensor reshape_impl(const char* op, const DTensor& a, const Shape& shape) {
  const Shape target = infer_shape(shape, a.shape(), op);
  ReshapeRules rules(target);
  const DTensor* inputs[] = {&a};
  const OpDecision& decision = detail::decide(op, std::span<const int64_t>(target), inputs, rules);
  std::vector<Tensor> locals = detail::prepared_locals(op, inputs, decision);
  // The accepted rules shard evenly, so a sharded output dim holds its size / k locally.
  Shape local_shape = target;
  const Shape& mesh_shape = a.mesh().shape();
  for (const Placement& p : decision.output) {
    if (!p.is_shard()) continue;
    local_shape[size_t(p.dim())] = target[size_t(p.dim())] / shard_count(decision.output, mesh_shape, p.dim());
  }
  return detail::wrap_output(locals[0].reshape(local_shape), a, decision);
}

}  // namespace

DTensor reshape(const DTensor& a, const Shape& shape) { return reshape_impl("reshape", a, shape); }
DTensor view(const DTensor& a, const Shape& shape) { return reshape_impl("view", a, shape); }

DTensor flatten(const DTensor& a, int64_t start_dim, int64_t end_dim) {
  const char* op = "flatten";
  const Shape& in = a.shape();
  if (in.empty()) return reshape_impl(op, a, {1});  // torch flattens a 0-d tensor to [1]
  const int64_t start = normalize_dim(start_dim, a.dim(), op), end = normalize_dim(end_dim, a.dim(), op);
  check<ShapeError>(start <= end, op, "start_dim {} comes after end_dim {} (shape {})", start_dim, end_dim,
                    shape_str(in));
  Shape target(in.begin(), in.begin() + start);
  target.push_back(std::accumulate(in.begin() + start, in.begin() + end + 1, int64_t(1), std::multiplies<>()));
  target.insert(target.end(), in.begin() + end + 1, in.end());
  return reshape_impl(op, a, target);
}

DTensor transpose(const DTensor& a, int64_t dim0, int64_t dim1) {
  const char* op = "transpose";
  const int64_t d0 = normalize_dim(dim0, a.dim(), op), d1 = normalize_dim(dim1, a.dim(), op);
  std::vector<int64_t> perm(size_t(a.dim()));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  std::swap(perm[size_t(d0)], perm[size_t(d1)]);
  return permute_impl(op, a, std::move(perm));
}

DTensor permute(const DTensor& a, const std::vector<int64_t>& dims) {
  return permute_impl("permute", a, normalized_permutation(dims, a.dim(), "permute"));
}

DTensor narrow(const DTensor& a, int64_t dim, int64_t start, int64_t length) {
  const char* op = "narrow";
  const int64_t d = normalize_dim(dim, a.dim(), op);
  NarrowRules rules(d, start, length);
  // The narrowed dim is whole on every rank under every rule, so the GLOBAL start applies.
  return detail::run_op(op, {d, start, length}, {&a}, rules,
                        [&](const std::vector<Tensor>& t, const OpDecision&) { return t[0].narrow(d, start, length); });
}

}  // namespace dtensor
