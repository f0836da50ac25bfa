// Reverse-mode automatic differentiation of local tensors (docs/design.md section 13).
//
//   namespace ag = dtensor::autograd;
//   Tensor w = random({3, 4}, DType::F32, {});
//   ag::set_requires_grad(w);                              // a leaf that wants a gradient
//   Tensor loss = ag::mean(ag::mul(x, w));                  // the ops of autograd/ops.hpp record a graph
//   ag::backward(loss);                                     // ag::grad(w) += d loss / d w
//
// Only the ops of autograd/ops.hpp record, and only when one of their inputs requires a gradient
// and no NoGradGuard is active; the kernels of tensor/ops.hpp never record. Gradients accumulate
// into leaves across backward calls until zero_grad. Autograd state lives in Tensor's opaque slot
// (tensor/tensor.hpp), so these are free functions rather than Tensor methods.
#pragma once

#include "tensor/error.hpp"
#include "tensor/tensor.hpp"

#include <memory>

namespace dtensor {

// Misuse of the autograd graph, e.g. a second backward through nodes whose saved tensors an
// earlier backward already freed.
class AutogradError : public Error {
  using Error::Error;
};

namespace autograd {

class Node;

// Marks a leaf (a tensor no recorded op produced) as wanting a gradient, or no longer wanting one.
// ValueError for a non-leaf, DTypeError for a non-floating dtype. Copies of the handle made
// afterwards share the state; copies made before do not.
void set_requires_grad(Tensor& tensor, bool wanted = true);
// A leaf marked by set_requires_grad, or the output of a recorded op.
bool requires_grad(const Tensor& tensor);
// True unless a recorded op produced the tensor.
bool is_leaf(const Tensor& tensor);
// The node that produced the tensor, null for leaves and for anything recorded under NoGradGuard.
std::shared_ptr<Node> grad_fn(const Tensor& tensor);
// The gradient accumulated into a leaf (undefined before the first backward that reaches it).
Tensor grad(const Tensor& tensor);
// Fills a leaf's accumulated gradient with zeros in place, keeping its buffer (nothing if none).
void zero_grad(const Tensor& tensor);
// The same view without autograd state: ops on it record nothing and send no gradient back.
Tensor detach(const Tensor& tensor);

// Runs the backward pass from `root`, adding d root / d leaf into every leaf that requires a
// gradient. `gradient` is d loss / d root (same shape and dtype); it may be omitted only for a
// one-element root, where it is 1. Without retain_graph, each node's saved tensors are freed as
// soon as its backward has run, and a later backward through such a node is an AutogradError.
void backward(const Tensor& root, const Tensor& gradient = Tensor(), bool retain_graph = false);

// False inside a NoGradGuard on this thread. Ops ask only once an input requires a gradient, so
// inference never does. Defined in the library (not inline) so that one flag per thread serves
// the library and every program, whatever their symbol visibility.
bool grad_mode_enabled();
void set_grad_mode_enabled(bool enabled);

// While alive, ops on this thread record nothing (as torch.no_grad()). Nests; restores the mode
// it found when destroyed.
class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_mode_enabled()) { set_grad_mode_enabled(false); }
  ~NoGradGuard() { set_grad_mode_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace autograd
}  // namespace dtensor
