// Leaves, gradients, detach and grad mode: the user-facing state of autograd.hpp.
#include "autograd/autograd.hpp"

#include "autograd/node.hpp"

namespace dtensor::autograd {

namespace {
thread_local bool grad_mode = true;
}

bool grad_mode_enabled() { return grad_mode; }

void set_grad_mode_enabled(bool enabled) { grad_mode = enabled; }

void set_requires_grad(Tensor& tensor, bool wanted) {
  mark_requires_grad<AutogradMeta>(tensor, tensor.defined(), tensor.dtype(), wanted);
}

bool requires_grad(const Tensor& tensor) { return tensor.autograd_meta() && tensor.autograd_meta()->requires_grad; }

bool is_leaf(const Tensor& tensor) { return !tensor.autograd_meta() || !tensor.autograd_meta()->grad_fn; }

std::shared_ptr<Node> grad_fn(const Tensor& tensor) {
  return tensor.autograd_meta() ? tensor.autograd_meta()->grad_fn : nullptr;
}

Tensor grad(const Tensor& tensor) { return tensor.autograd_meta() ? tensor.autograd_meta()->grad : Tensor(); }

void zero_grad(const Tensor& tensor) {
  if (tensor.autograd_meta() && tensor.autograd_meta()->grad.defined()) tensor.autograd_meta()->grad.fill(0.0);
}

Tensor detach(const Tensor& tensor) {
  Tensor detached = tensor;
  detached.set_autograd_meta(nullptr);
  return detached;
}

}  // namespace dtensor::autograd
