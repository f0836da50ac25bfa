// Sharding rules of the reductions sum, mean, amax, amin and of argmax.
//
// Per mesh dim, for a reduction over the dims `reduced`:
//   R -> R
//   S(d), d kept    -> S(d')        d' = d's index in the output (keepdim or not)
//   S(d), d reduced -> P(sum)       sum and mean; P(max) for amax, P(min) for amin
//   P(sum|avg)      -> the same     sum and mean are linear
//   P(max) -> P(max) for amax, P(min) -> P(min) for amin
// mean over a sharded dim is the local SUM divided by the GLOBAL count of reduced elements, so
// the P(sum) of the shards is the exact mean even when shards are uneven or empty (a P(avg) of
// local means would weigh a short shard like a full one).
// argmax has no partial form: its dim must be Replicate; other dims keep their shards.
#include "dtensor/ops.hpp"

#include "dtensor/ops/dispatch.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

#include <limits>

namespace dtensor {

namespace {

using detail::ArgInfo;
using detail::DimRule;
using detail::OpDecision;

enum class Reduction { Sum, Mean, Max, Min };

// A reduction mask is cached as a bit set; wider tensors are refused (see output_shape).
constexpr int64_t kMaxReduceDims = 62;

// The cache key of `dims` on an ndim-dim tensor: the bit set of the normalized dims, or -1 when
// they are invalid. reduced_dim_mask throws for exactly those, inside decide, so a -1 key is
// never stored in the decision cache.
int64_t dims_key(const std::vector<int64_t>& dims, int64_t ndim) {
  if (ndim > kMaxReduceDims) return -1;
  if (ndim == 0) {
    for (int64_t d : dims) {
      if (d != 0 && d != -1) return -1;
    }
    return 0;
  }
  if (dims.empty()) return (int64_t(1) << ndim) - 1;
  int64_t mask = 0;
  for (int64_t d : dims) {
    if (d < -ndim || d >= ndim) return -1;
    const int64_t bit = int64_t(1) << (d < 0 ? d + ndim : d);
    if (mask & bit) return -1;
    mask |= bit;
  }
  return mask;
}

// Where input dim d lands in the output (-1 when it is reduced away without keepdim).
int64_t output_dim(const std::vector<bool>& reduced, size_t d, bool keepdim) {
  if (keepdim) return int64_t(d);
  if (reduced[d]) return -1;
  int64_t out = 0;
  for (size_t i = 0; i < d; ++i) out += reduced[i] ? 0 : 1;
  return out;
}

// The Partial a shard of a reduced dim turns into, and the Partial inputs kept partial.
Placement partial_of(Reduction r) {
  switch (r) {
    case Reduction::Max:
      return Partial(ReduceOp::Max);
    case Reduction::Min:
      return Partial(ReduceOp::Min);
    default:
      return Partial(ReduceOp::Sum);
  }
}

bool keeps_partial(Reduction r, const Placement& p) {
  switch (r) {
    case Reduction::Sum:
    case Reduction::Mean:
      return detail::is_linear_partial(p);
    case Reduction::Max:
      return p.reduce_op() == ReduceOp::Max;
    case Reduction::Min:
      return p.reduce_op() == ReduceOp::Min;
  }
  return false;
}

class ReduceRules : public detail::OpRules {
 public:
  ReduceRules(const char* op, Reduction kind, const std::vector<int64_t>& dims, bool keepdim)
      : op_(op), kind_(kind), dims_(dims), keepdim_(keepdim) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    const Shape& shape = args[0].shape;
    check<ShapeError>(int64_t(shape.size()) <= kMaxReduceDims, op_, "at most {} dims are supported, got shape {}",
                      kMaxReduceDims, shape_str(shape));
    if (kind_ == Reduction::Mean) {
      check<DTypeError>(is_floating(args[0].dtype), op_,
                        "argument 'a' must have a floating dtype (f32, f64, bf16, f16), got {}", args[0].dtype);
    }
    const std::vector<bool> reduced = detail::reduced_dim_mask(dims_, int64_t(shape.size()), op_);
    Shape out;
    for (size_t d = 0; d < shape.size(); ++d) {
      // A max over nothing has no value (the local op and torch raise too).
      check<ShapeError>(!reduced[d] || shape[d] > 0 || kind_ == Reduction::Sum || kind_ == Reduction::Mean, op_,
                        "cannot reduce over dim {} of size 0 (shape {})", d, shape_str(shape));
      if (!reduced[d])
        out.push_back(shape[d]);
      else if (keepdim_)
        out.push_back(1);
    }
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape&) const override {
    const Shape& shape = args[0].shape;
    const std::vector<bool> reduced = detail::reduced_dim_mask(dims_, int64_t(shape.size()), op_);
    std::vector<DimRule> rules;
    for (size_t d = 0; d < shape.size(); ++d) {
      rules.push_back({{Shard(int64_t(d))}, reduced[d] ? partial_of(kind_) : Shard(output_dim(reduced, d, keepdim_))});
    }
    for (const Placement& p : args[0].placements) {
      if (p.is_partial() && keeps_partial(kind_, p)) rules.push_back({{p}, p});
    }
    return rules;
  }

 private:
  const char* op_;
  Reduction kind_;
  const std::vector<int64_t>& dims_;
  bool keepdim_;
};

// amax/amin of a local block whose reduced extent is empty (its shard of a reduced dim is empty):
// the identity of the reduction, which the P(max)/P(min) combine ignores. Filled on the host,
// then moved to `device`.
Tensor identity_block(const Shape& shape, DType dtype, Reduction kind, Device device) {
  Tensor out = Tensor::empty(shape, dtype);
  visit_dtype(dtype, [&]<typename T>() {
    using C = compute_t<T>;
    C value;
    if constexpr (std::is_floating_point_v<C>) {
      value = kind == Reduction::Max ? -std::numeric_limits<C>::infinity() : std::numeric_limits<C>::infinity();
    } else {
      value = kind == Reduction::Max ? std::numeric_limits<C>::lowest() : std::numeric_limits<C>::max();
    }
    T* p = detail::mdata<T>(out);
    for (int64_t i = 0; i < out.numel(); ++i) p[i] = T(value);
  });
  return device.is_cpu() ? out : out.to(device);
}

// mean of a block whose reduced dims are sharded: its sum over the global count (16-bit floats
// summed and divided in f32, rounded once).
Tensor sharded_mean(const Tensor& local, const std::vector<int64_t>& dims, bool keepdim, int64_t global_count) {
  const bool narrow = local.dtype() == DType::BF16 || local.dtype() == DType::F16;
  Tensor s = sum(narrow ? local.to(DType::F32) : local, dims, keepdim);
  Tensor q = div(s, Tensor::full({}, double(global_count), s.dtype(), s.device()));
  return q.to(local.dtype());
}

DTensor reduce(const char* op, Reduction kind, const DTensor& a, const std::vector<int64_t>& dims, bool keepdim,
               PartialResult result) {
  ReduceRules rules(op, kind, dims, keepdim);
  DTensor out = detail::run_op(
      op, {dims_key(dims, a.dim()), keepdim}, {&a}, rules, [&](const std::vector<Tensor>& t, const OpDecision& rule) {
        const Tensor& local = t[0];
        // Valid: output_shape checked the dims before any communication.
        const std::vector<bool> reduced = detail::reduced_dim_mask(dims, a.dim(), op);
        bool reduced_sharded = false;
        for (const Placement& p : rule.inputs[0])
          reduced_sharded = reduced_sharded || (p.is_shard() && reduced[size_t(p.dim())]);
        bool empty_extent = false;
        int64_t global_count = 1;
        for (size_t d = 0; d < reduced.size(); ++d) {
          if (!reduced[d]) continue;
          empty_extent = empty_extent || local.shape()[d] == 0;
          global_count *= a.shape()[d];
        }
        switch (kind) {
          case Reduction::Sum:
            return sum(local, dims, keepdim);
          case Reduction::Mean:
            return reduced_sharded ? sharded_mean(local, dims, keepdim, global_count) : mean(local, dims, keepdim);
          case Reduction::Max:
          case Reduction::Min:
            if (empty_extent) {
              Shape out = detail::reduced_shape(local.shape(), reduced, keepdim);
              return identity_block(out, a.dtype(), kind, local.device());
            }
            return kind == Reduction::Max ? amax(local, dims, keepdim) : amin(local, dims, keepdim);
        }
        fail<ValueError>(op, "unknown reduction");
      });
  if (result == PartialResult::Keep) return out;
  Placements target = out.placements();
  bool partial = false;
  for (Placement& p : target) {
    if (!p.is_partial()) continue;
    p = Replicate();
    partial = true;
  }
  return partial ? out.redistribute(target) : out;
}

class ArgmaxRules : public detail::OpRules {
 public:
  ArgmaxRules(int64_t dim, bool keepdim) : dim_(dim), keepdim_(keepdim) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    const Shape& shape = args[0].shape;
    const int64_t d = detail::normalize_dim_or_scalar(dim_, int64_t(shape.size()), "argmax");
    if (shape.empty()) return {};
    check<ShapeError>(shape[size_t(d)] > 0, "argmax", "cannot take argmax over dim {} of size 0 (shape {})", dim_,
                      shape_str(shape));
    Shape out = shape;
    if (keepdim_)
      out[size_t(d)] = 1;
    else
      out.erase(out.begin() + d);
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape&) const override {
    const Shape& shape = args[0].shape;
    std::vector<DimRule> rules;
    if (shape.empty()) return rules;
    const int64_t reduced = normalize_dim(dim_, int64_t(shape.size()), "argmax");
    for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
      if (d == reduced) continue;
      rules.push_back({{Shard(d)}, Shard(keepdim_ || d < reduced ? d : d - 1)});
    }
    return rules;
  }

 private:
  int64_t dim_;
  bool keepdim_;
};

}  // namespace

DTensor sum(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim, PartialResult result) {
  return reduce("sum", Reduction::Sum, a, dims, keepdim, result);
}
DTensor mean(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim, PartialResult result) {
  return reduce("mean", Reduction::Mean, a, dims, keepdim, result);
}
DTensor amax(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim, PartialResult result) {
  return reduce("amax", Reduction::Max, a, dims, keepdim, result);
}
DTensor amin(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim, PartialResult result) {
  return reduce("amin", Reduction::Min, a, dims, keepdim, result);
}

DTensor argmax(const DTensor& a, int64_t dim, bool keepdim) {
  ArgmaxRules rules(dim, keepdim);
  return detail::run_op("argmax", {dim, keepdim}, {&a}, rules,
                        [&](const std::vector<Tensor>& t, const OpDecision&) { return argmax(t[0], dim, keepdim); });
}

}  // namespace dtensor
