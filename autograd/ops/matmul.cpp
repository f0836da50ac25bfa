// Matrix products with their backwards: for out = a b, da = dout b^T and db = a^T dout, on
// transposed views the GEMMs read in place.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "tensor/ops.hpp"

namespace dtensor::autograd {

namespace {
Tensor transposed(const Tensor& m) { return m.transpose(-1, -2); }

// t as a matrix of its last dim's rows. The row count is spelled out rather than -1, which a
// tensor with an empty last dim (a rank's empty shard) would leave undetermined.
Tensor as_rows(const Tensor& t) {
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) rows *= t.size(d);
  return t.reshape({rows, t.size(-1)});
}

// b's gradient when a batch of a [B, m, k] multiplied one matrix b [k, n]: the batch folds into rows.
Tensor shared_matrix_grad(const Tensor& a, const Tensor& grad) {
  return dtensor::matmul(transposed(as_rows(a)), as_rows(grad));
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::matmul(a, b);
  if (!should_record(a, b)) return out;
  return record("matmul", {a, b}, {a, b}, out, [](const FunctionNode& node, const Tensor& grad) {
    const Tensor& a = node.saved(0);
    const Tensor& b = node.saved(1);
    Tensor grad_b;
    if (node.needs_grad(1)) {
      grad_b = a.dim() == b.dim() ? dtensor::matmul(transposed(a), grad) : shared_matrix_grad(a, grad);
    }
    return Grads{node.needs_grad(0) ? dtensor::matmul(grad, transposed(b)) : Tensor(), grad_b};
  });
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  Tensor out = dtensor::bmm(a, b);
  if (!should_record(a, b)) return out;
  return record("bmm", {a, b}, {a, b}, out, [](const FunctionNode& node, const Tensor& grad) {
    const Tensor& a = node.saved(0);
    const Tensor& b = node.saved(1);
    return Grads{node.needs_grad(0) ? dtensor::bmm(grad, transposed(b)) : Tensor(),
                 node.needs_grad(1) ? dtensor::bmm(transposed(a), grad) : Tensor()};
  });
}

// out = x W^T + bias over rows of x: dx = dout W, dW = dout^T x, dbias = sum of dout's rows.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Tensor out = dtensor::linear(x, weight, bias);
  if (!should_record(x, weight, bias)) return out;
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("linear", inputs, {x, weight}, out, [](const FunctionNode& node, const Tensor& grad) {
    const Tensor& x = node.saved(0);
    const Tensor& weight = node.saved(1);
    Tensor grad_rows = as_rows(grad);
    Grads grads{node.needs_grad(0) ? dtensor::matmul(grad_rows, weight).reshape(x.shape()) : Tensor(),
                node.needs_grad(1) ? dtensor::matmul(transposed(grad_rows), as_rows(x)) : Tensor()};
    if (node.next_edges().size() == 3) grads.push_back(dtensor::sum(grad_rows, {0}));
    return grads;
  });
}

}  // namespace dtensor::autograd
