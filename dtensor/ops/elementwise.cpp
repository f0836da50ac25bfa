// Sharding rules of elementwise ops: binary with broadcasting, where, scalar and unary ops.
//
// Per mesh dim: everything Replicate; or the output sharded on dim d with every input that has a
// matching (non-broadcast) dim sharded there too and the inputs that broadcast along d
// replicated; or a Partial rule where the op is exact on partial values (see ops.hpp).
#include "dtensor/ops.hpp"

#include "dtensor/ops/dispatch.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor {

namespace {

using detail::ArgInfo;
using detail::DimRule;
using detail::OpDecision;

// Which Partial inputs an op keeps partial.
enum class PartialMode {
  None,         // nonlinear: Partial inputs are reduced first
  AllLinear,    // add, sub: every input P(sum), or every input P(avg)
  FirstLinear,  // div: the first input P(sum|avg), the others Replicate
  AnyLinear,    // mul: any one input P(sum|avg), the others Replicate
  AllMax,       // maximum: every input P(max)
  AllMin,       // minimum: every input P(min)
  Values,       // where: cond Replicate, a and b both P(sum) or both P(avg)
};

// The input dim that output dim d reads (-1 when the input broadcasts along d).
int64_t matching_dim(const Shape& in, const Shape& out, size_t d) {
  const int64_t di = int64_t(d) - int64_t(out.size() - in.size());
  return di >= 0 && in[size_t(di)] == out[d] ? di : -1;
}

std::vector<DimRule> shard_rules(std::span<const ArgInfo> args, const Shape& out) {
  std::vector<DimRule> rules;
  for (size_t d = 0; d < out.size(); ++d) {
    DimRule rule{{}, Shard(int64_t(d))};
    bool any = false;
    for (const ArgInfo& a : args) {
      int64_t di = matching_dim(a.shape, out, d);
      any = any || di >= 0;
      rule.inputs.push_back(di >= 0 ? Shard(di) : Replicate());
    }
    if (any) rules.push_back(std::move(rule));
  }
  return rules;
}

std::vector<DimRule> partial_rules(PartialMode mode, size_t n) {
  auto same = [n](Placement p) { return DimRule{std::vector<Placement>(n, p), p}; };
  auto one_of = [n](size_t i, Placement p) {
    DimRule rule{std::vector<Placement>(n, Replicate()), p};
    rule.inputs[i] = p;
    return rule;
  };
  std::vector<DimRule> rules;
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
    Placement p = Partial(op);
    switch (mode) {
      case PartialMode::AllLinear:
        rules.push_back(same(p));
        break;
      case PartialMode::FirstLinear:
        rules.push_back(one_of(0, p));
        break;
      case PartialMode::AnyLinear:
        for (size_t i = 0; i < n; ++i) rules.push_back(one_of(i, p));
        break;
      case PartialMode::Values:
        rules.push_back({{Replicate(), p, p}, p});
        break;
      default:
        break;
    }
  }
  if (mode == PartialMode::AllMax) rules.push_back(same(Partial(ReduceOp::Max)));
  if (mode == PartialMode::AllMin) rules.push_back(same(Partial(ReduceOp::Min)));
  return rules;
}

class ElementwiseRules : public detail::OpRules {
 public:
  ElementwiseRules(const char* op, PartialMode mode) : op_(op), mode_(mode) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    // where's cond (input 0 of three) has its own dtype; the values must agree.
    const size_t first_value = args.size() == 3 ? 1 : 0;
    for (size_t i = first_value + 1; i < args.size(); ++i) {
      check<DTypeError>(args[i].dtype == args[first_value].dtype, op_, "dtypes differ: {} and {}",
                        args[first_value].dtype, args[i].dtype);
    }
    Shape out = args[0].shape;
    for (size_t i = 1; i < args.size(); ++i) out = dtensor::detail::broadcast_shapes(out, args[i].shape, op_);
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape& out) const override {
    std::vector<DimRule> rules = shard_rules(args, out);
    for (DimRule& r : partial_rules(mode_, args.size())) rules.push_back(std::move(r));
    return rules;
  }

 private:
  const char* op_;
  PartialMode mode_;
};

// Unary and scalar ops: the input's layout carries over; `partial` maps a Partial input to the
// output's Partial, or gives nothing when the op is not exact on it.
class PointwiseRules : public detail::OpRules {
 public:
  using PartialMap = std::optional<Placement> (*)(const Placement&);
  PointwiseRules(PartialMap partial) : partial_(partial) {}

  Shape output_shape(std::span<const ArgInfo> args) const override { return args[0].shape; }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape& out) const override {
    std::vector<DimRule> rules;
    for (size_t d = 0; d < out.size(); ++d) rules.push_back({{Shard(int64_t(d))}, Shard(int64_t(d))});
    for (const Placement& p : args[0].placements) {
      if (!p.is_partial() || partial_ == nullptr) continue;
      if (auto out_p = partial_(p)) rules.push_back({{p}, *out_p});
    }
    return rules;
  }

 private:
  PartialMap partial_;
};

std::optional<Placement> keeps_linear(const Placement& p) {
  return detail::is_linear_partial(p) ? std::optional(p) : std::nullopt;
}

// x + s: avg, max and min of (x_i + s) are (avg, max, min of x_i) + s; a sum would add s k times.
std::optional<Placement> shifts(const Placement& p) {
  return p.reduce_op() == ReduceOp::Sum ? std::nullopt : std::optional(p);
}

// -x: sums and averages negate, max and min swap.
std::optional<Placement> negates(const Placement& p) {
  switch (p.reduce_op()) {
    case ReduceOp::Max:
      return Partial(ReduceOp::Min);
    case ReduceOp::Min:
      return Partial(ReduceOp::Max);
    case ReduceOp::Sum:
    case ReduceOp::Avg:
      return p;
    default:
      return std::nullopt;
  }
}

template <typename Fn>
DTensor binary(const char* op, PartialMode mode, const DTensor& a, const DTensor& b, Fn fn) {
  ElementwiseRules rules(op, mode);
  return detail::run_op(op, {}, {&a, &b}, rules,
                        [&](const std::vector<Tensor>& t, const OpDecision&) { return fn(t[0], t[1]); });
}

template <typename Fn>
DTensor pointwise(const char* op, detail::OpParams params, PointwiseRules::PartialMap partial, const DTensor& a,
                  Fn fn) {
  PointwiseRules rules(partial);
  return detail::run_op(op, params, {&a}, rules,
                        [&](const std::vector<Tensor>& t, const OpDecision&) { return fn(t[0]); });
}

// A 0-d tensor of a's dtype (and device) holding s, so scalar ops round exactly as the tensor ops do.
Tensor scalar_like(const DTensor& a, double s) { return Tensor::full({}, s, a.dtype(), a.local_tensor().device()); }

#define DTENSOR_UNARY(name, partial)                                                           \
  DTensor name(const DTensor& a) {                                                             \
    return pointwise(#name, {}, partial, a, [](const Tensor& t) { return dtensor::name(t); }); \
  }

}  // namespace

DTensor add(const DTensor& a, const DTensor& b) {
  return binary("add", PartialMode::AllLinear, a, b, [](const Tensor& x, const Tensor& y) { return add(x, y); });
}
DTensor sub(const DTensor& a, const DTensor& b) {
  return binary("sub", PartialMode::AllLinear, a, b, [](const Tensor& x, const Tensor& y) { return sub(x, y); });
}
DTensor mul(const DTensor& a, const DTensor& b) {
  return binary("mul", PartialMode::AnyLinear, a, b, [](const Tensor& x, const Tensor& y) { return mul(x, y); });
}
DTensor div(const DTensor& a, const DTensor& b) {
  return binary("div", PartialMode::FirstLinear, a, b, [](const Tensor& x, const Tensor& y) { return div(x, y); });
}
DTensor maximum(const DTensor& a, const DTensor& b) {
  return binary("maximum", PartialMode::AllMax, a, b, [](const Tensor& x, const Tensor& y) { return maximum(x, y); });
}
DTensor minimum(const DTensor& a, const DTensor& b) {
  return binary("minimum", PartialMode::AllMin, a, b, [](const Tensor& x, const Tensor& y) { return minimum(x, y); });
}

DTensor where(const DTensor& cond, const DTensor& a, const DTensor& b) {
  ElementwiseRules rules("where", PartialMode::Values);
  return detail::run_op("where", {}, {&cond, &a, &b}, rules,
                        [](const std::vector<Tensor>& t, const OpDecision&) { return where(t[0], t[1], t[2]); });
}

DTensor add(const DTensor& a, double s) {
  return pointwise("add_scalar", {}, shifts, a, [&](const Tensor& t) { return add(t, scalar_like(a, s)); });
}
DTensor sub(const DTensor& a, double s) {
  return pointwise("sub_scalar", {}, shifts, a, [&](const Tensor& t) { return sub(t, scalar_like(a, s)); });
}
DTensor mul(const DTensor& a, double s) {
  // A negative factor turns a max into a min: only sums and averages stay partial.
  return pointwise("mul_scalar", {}, keeps_linear, a, [&](const Tensor& t) { return mul(t, scalar_like(a, s)); });
}
DTensor div(const DTensor& a, double s) {
  return pointwise("div_scalar", {}, keeps_linear, a, [&](const Tensor& t) { return div(t, scalar_like(a, s)); });
}

DTENSOR_UNARY(neg, negates)
DTENSOR_UNARY(exp, nullptr)
DTENSOR_UNARY(log, nullptr)
DTENSOR_UNARY(sqrt, nullptr)
DTENSOR_UNARY(rsqrt, nullptr)
DTENSOR_UNARY(tanh, nullptr)
DTENSOR_UNARY(relu, nullptr)
DTENSOR_UNARY(silu, nullptr)
DTENSOR_UNARY(gelu, nullptr)

DTensor cast(const DTensor& a, DType dtype) {
  // Converting partial values to f32/f64 and summing them is exact enough to keep; rounding each
  // partial to a narrower type (or an integer) before the sum is not, so those reduce first.
  const bool widening = is_floating(a.dtype()) && (dtype == DType::F32 || dtype == DType::F64);
  return pointwise("cast", {int64_t(dtype)}, widening ? keeps_linear : nullptr, a,
                   [&](const Tensor& t) { return t.to(dtype); });
}

}  // namespace dtensor
