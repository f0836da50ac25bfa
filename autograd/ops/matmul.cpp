// Matrix products with their backwards: for out = a b, da = dout b^T and db = a^T dout, on
// transposed views the GEMMs read in place.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "tensor/ops.hpp"

namespace dtensor::autograd {

namespace {
Tensor transposed(const Tensor& m) { return m.transpose(-1, -2); }

// b's gradient when a batch of a [B, m, k] multiplied one matrix b [k, n]: the batch folds into rows.
Tensor shared_matrix_grad(const Tensor& a, const Tensor& grad) {
  Tensor rows_a = a.reshape({-1, a.size(-1)});
  Tensor rows_grad = grad.reshape({-1, grad.size(-1)});
  return dtensor::matmul(transposed(rows_a), rows_grad);
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
    Tensor grad_rows = grad.reshape({-1, weight.size(0)});
    Grads grads{node.needs_grad(0) ? dtensor::matmul(grad_rows, weight).reshape(x.shape()) : Tensor(),
                node.needs_grad(1) ? dtensor::matmul(transposed(grad_rows), x.reshape({-1, x.size(-1)})) : Tensor()};
    if (node.next_edges().size() == 3) grads.push_back(dtensor::sum(grad_rows, {0}));
    return grads;
  });
}

}  // namespace dtensor::autograd
