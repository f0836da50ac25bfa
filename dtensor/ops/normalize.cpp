// Sharding rules of softmax, log_softmax, layer_norm and rms_norm.
//
// Per mesh dim:
//   softmax(dim):  R -> R;  S(d) -> S(d) for d != dim
//   layer_norm / rms_norm over the last dim, (x, weight[, bias]):
//                  (R, R[, R]) -> R;  (S(d), R[, R]) -> S(d) for d != last
// The normalised dim must be whole on every rank; weight and bias are Replicate. None of these
// is linear, so Partial inputs are reduced first (no rule keeps them).
#include "dtensor/ops.hpp"

#include "dtensor/ops/dispatch.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor {

namespace {

using detail::ArgInfo;
using detail::DimRule;
using detail::OpDecision;

// Rules that keep every dim of input 0 but `whole` split alike in the output, the other inputs
// Replicate.
std::vector<DimRule> rows_rules(size_t n_inputs, int64_t ndim, int64_t whole) {
  std::vector<DimRule> rules;
  for (int64_t d = 0; d < ndim; ++d) {
    if (d == whole) continue;
    DimRule rule = detail::all_replicate(n_inputs);
    rule.inputs[0] = Shard(d);
    rule.output = Shard(d);
    rules.push_back(std::move(rule));
  }
  return rules;
}

class SoftmaxRules : public detail::OpRules {
 public:
  SoftmaxRules(const char* op, int64_t dim) : op_(op), dim_(dim) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    check<DTypeError>(is_floating(args[0].dtype), op_,
                      "argument 'a' must have a floating dtype (f32, f64, bf16, f16), got {}", args[0].dtype);
    detail::normalize_dim_or_scalar(dim_, int64_t(args[0].shape.size()), op_);
    return args[0].shape;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape&) const override {
    const int64_t ndim = int64_t(args[0].shape.size());
    return rows_rules(1, ndim, detail::normalize_dim_or_scalar(dim_, ndim, op_));
  }

 private:
  const char* op_;
  int64_t dim_;
};

class NormRules : public detail::OpRules {
 public:
  explicit NormRules(const char* op) : op_(op) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    const Shape& x = args[0].shape;
    check<DTypeError>(is_floating(args[0].dtype), op_,
                      "argument 'x' must have a floating dtype (f32, f64, bf16, f16), got {}", args[0].dtype);
    check<ShapeError>(!x.empty(), op_, "x needs at least one dim to normalise over, got shape {}", shape_str(x));
    const char* names[] = {"x", "weight", "bias"};
    for (size_t i = 1; i < args.size(); ++i) {
      check<DTypeError>(args[i].dtype == args[0].dtype, op_, "{} has dtype {}, expected x's dtype {}", names[i],
                        args[i].dtype, args[0].dtype);
      check<ShapeError>(args[i].shape == Shape{x.back()}, op_, "{} must have shape [{}] (x's last dim), got {}",
                        names[i], x.back(), shape_str(args[i].shape));
    }
    return x;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape& out) const override {
    const int64_t ndim = int64_t(out.size());
    return rows_rules(args.size(), ndim, ndim - 1);
  }

 private:
  const char* op_;
};

DTensor softmax_like(const char* op, const DTensor& a, int64_t dim, Tensor (*local)(const Tensor&, int64_t)) {
  SoftmaxRules rules(op, dim);
  return detail::run_op(op, {dim}, {&a}, rules,
                        [&](const std::vector<Tensor>& t, const OpDecision&) { return local(t[0], dim); });
}

}  // namespace

DTensor softmax(const DTensor& a, int64_t dim) { return softmax_like("softmax", a, dim, softmax); }
DTensor log_softmax(const DTensor& a, int64_t dim) { return softmax_like("log_softmax", a, dim, log_softmax); }

DTensor layer_norm(const DTensor& x, const DTensor& weight, const DTensor& bias, double eps) {
  NormRules rules("layer_norm");
  return detail::run_op(
      "layer_norm", {}, {&x, &weight, &bias}, rules,
      [&](const std::vector<Tensor>& t, const OpDecision&) { return layer_norm(t[0], t[1], t[2], eps); });
}

DTensor rms_norm(const DTensor& x, const DTensor& weight, double eps) {
  NormRules rules("rms_norm");
  return detail::run_op("rms_norm", {}, {&x, &weight}, rules,
                        [&](const std::vector<Tensor>& t, const OpDecision&) { return rms_norm(t[0], t[1], eps); });
}

}  // namespace dtensor
