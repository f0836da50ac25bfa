// Sharding rules of matmul, bmm and linear.
//
// For out = a @ b with a [..., m, k] and b [..., k, n], per mesh dim:
//   (R, R) -> R                      nothing to split
//   (S(m), R) -> S(m)                rows of a: rows of out
//   (R, S(n)) -> S(n)                columns of b: columns of out
//   (S(k), S(k)) -> P(sum)           the contraction split on both: partial products
//   (P, R) -> P, (R, P) -> P         a product is linear in each factor (sum and avg)
//   (S(batch), S(batch) or R) -> S(batch)   batch dims split alike (R where b broadcasts)
// linear(x, W, bias) is x @ W^T + bias: W [out, in] is sharded by rows for output columns
// (colwise) and by columns for a partial sum (rowwise, bias then P(sum): added once).
#include "dtensor/ops.hpp"

#include "dtensor/ops/dispatch.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

namespace dtensor {

namespace {

using detail::ArgInfo;
using detail::DimRule;
using detail::OpDecision;

int64_t ndim(const Shape& s) { return int64_t(s.size()); }

// The input's batch dim that output batch dim d reads (-1 when the input broadcasts it).
int64_t batch_dim(const Shape& in, size_t out_batch, size_t d) {
  const int64_t di = int64_t(d) - int64_t(out_batch - (in.size() - 2));
  return di >= 0 ? di : -1;
}

class MatmulRules : public detail::OpRules {
 public:
  explicit MatmulRules(const char* op) : op_(op) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    const Shape& a = args[0].shape;
    const Shape& b = args[1].shape;
    check<DTypeError>(args[0].dtype == args[1].dtype, op_, "dtypes differ: {} and {}", args[0].dtype, args[1].dtype);
    check<ShapeError>(a.size() >= 2 && b.size() >= 2, op_, "a and b need at least 2 dims, got {} and {}", shape_str(a),
                      shape_str(b));
    check<ShapeError>(a.back() == b[b.size() - 2], op_, "a's last dim {} differs from b's rows {} ({} @ {})", a.back(),
                      b[b.size() - 2], shape_str(a), shape_str(b));
    if (std::string_view(op_) == "bmm") {
      check<ShapeError>(a.size() == 3 && b.size() == 3 && a[0] == b[0], op_,
                        "a and b must be 3-D with equal batch size, got {} and {}", shape_str(a), shape_str(b));
    }
    Shape out = detail::broadcast_shapes(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2), op_);
    out.push_back(a[a.size() - 2]);
    out.push_back(b.back());
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape& out) const override {
    const Shape& a = args[0].shape;
    const Shape& b = args[1].shape;
    const int64_t o = ndim(out);
    std::vector<DimRule> rules = {{{Shard(ndim(a) - 2), Replicate()}, Shard(o - 2)},
                                  {{Replicate(), Shard(ndim(b) - 1)}, Shard(o - 1)},
                                  {{Shard(ndim(a) - 1), Shard(ndim(b) - 2)}, Partial()}};
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
      rules.push_back({{Partial(op), Replicate()}, Partial(op)});
      rules.push_back({{Replicate(), Partial(op)}, Partial(op)});
    }
    const size_t batch = out.size() - 2;
    for (size_t d = 0; d < batch; ++d) {
      int64_t da = batch_dim(a, batch, d), db = batch_dim(b, batch, d);
      bool a_splits = da >= 0 && a[size_t(da)] == out[d];
      bool b_splits = db >= 0 && b[size_t(db)] == out[d];
      if (!a_splits && !b_splits) continue;
      rules.push_back({{a_splits ? Shard(da) : Replicate(), b_splits ? Shard(db) : Replicate()}, Shard(int64_t(d))});
    }
    return rules;
  }

 private:
  const char* op_;
};

class LinearRules : public detail::OpRules {
 public:
  explicit LinearRules(bool has_bias) : has_bias_(has_bias) {}

  Shape output_shape(std::span<const ArgInfo> args) const override {
    const char* op = "linear";
    const Shape& x = args[0].shape;
    const Shape& w = args[1].shape;
    for (size_t i = 1; i < args.size(); ++i) {
      check<DTypeError>(args[i].dtype == args[0].dtype, op, "dtypes differ: x is {}, input {} is {}", args[0].dtype, i,
                        args[i].dtype);
    }
    check<ShapeError>(w.size() == 2, op, "weight must be 2-D [out, in], got shape {}", shape_str(w));
    check<ShapeError>(!x.empty() && x.back() == w[1], op,
                      "x's last dim must equal weight's in-features {}; got x shape {}", w[1], shape_str(x));
    if (has_bias_) {
      check<ShapeError>(args[2].shape == Shape{w[0]}, op, "bias must have shape [{}], got {}", w[0],
                        shape_str(args[2].shape));
    }
    Shape out = x;
    out.back() = w[0];
    return out;
  }

  std::vector<DimRule> dim_rules(std::span<const ArgInfo>, const Shape& out) const override {
    const int64_t last = ndim(out) - 1;
    std::vector<DimRule> rules;
    for (int64_t d = 0; d < last; ++d) rules.push_back(with_bias({Shard(d), Replicate()}, Replicate(), Shard(d)));
    rules.push_back(with_bias({Replicate(), Shard(0)}, Shard(0), Shard(last)));  // colwise
    rules.push_back(with_bias({Shard(last), Shard(1)}, Partial(), Partial()));   // rowwise
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
      rules.push_back(with_bias({Partial(op), Replicate()}, Partial(op), Partial(op)));
    }
    return rules;
  }

 private:
  DimRule with_bias(std::vector<Placement> inputs, Placement bias, Placement out) const {
    if (has_bias_) inputs.push_back(bias);
    return {std::move(inputs), out};
  }

  bool has_bias_;
};

DTensor product(const char* op, const DTensor& a, const DTensor& b, Tensor (*local)(const Tensor&, const Tensor&)) {
  MatmulRules rules(op);
  return detail::run_op(op, {}, {&a, &b}, rules,
                        [&](const std::vector<Tensor>& t, const OpDecision&) { return local(t[0], t[1]); });
}

}  // namespace

DTensor matmul(const DTensor& a, const DTensor& b) { return product("matmul", a, b, matmul); }
DTensor bmm(const DTensor& a, const DTensor& b) { return product("bmm", a, b, bmm); }

DTensor linear(const DTensor& x, const DTensor& weight) {
  LinearRules rules(false);
  return detail::run_op("linear", {0}, {&x, &weight}, rules,
                        [](const std::vector<Tensor>& t, const OpDecision&) { return linear(t[0], t[1]); });
}

DTensor linear(const DTensor& x, const DTensor& weight, const DTensor& bias) {
  LinearRules rules(true);
  return detail::run_op("linear", {1}, {&x, &weight, &bias}, rules,
                        [](const std::vector<Tensor>& t, const OpDecision&) { return linear(t[0], t[1], t[2]); });
}

}  // namespace dtensor
