// The autograd graph, for writers of differentiable ops (autograd/ops/*.cpp) and of the engine.
//
// A recorded op creates one FunctionNode holding the tensors its backward needs (saved without
// their own autograd state, so a node never keeps itself alive through its output) and one Edge
// per input: to the node that produced the input, or to the AccumulateGrad node of a leaf, or
// nothing when the input needs no gradient. The outputs' autograd slots point back at the node.
// An op writes its forward and backward side by side:
//
//   Tensor exp(const Tensor& a) {
//     Tensor out = dtensor::exp(a);
//     if (!should_record(a)) return out;          // inference: one pointer test per input
//     return record("exp", {a}, {out}, out, [](const FunctionNode& node, const Tensor& grad) {
//       return Grads{dtensor::mul(grad, node.saved(0))};
//     });
//   }
#pragma once

#include "autograd/autograd.hpp"
#include "tensor/tensor.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace dtensor {

// The state behind Tensor's autograd slot.
struct AutogradMeta {
  bool requires_grad = false;               // a marked leaf, or an output of a recorded op
  std::shared_ptr<autograd::Node> grad_fn;  // the node that made this tensor; null on leaves
  uint32_t output_nr = 0;                   // which of grad_fn's outputs this is
  Tensor grad;                              // leaves: the accumulated gradient, one buffer from the first backward
  // Leaves: the node accumulating into grad, shared by every use so that a leaf used twice
  // receives one summed gradient. Weak, as the graph owns it.
  std::weak_ptr<autograd::Node> grad_accumulator;
};

namespace autograd {

using Grads = std::vector<Tensor>;

// A gradient value other than a local Tensor, e.g. a DTensor's (dtensor/autograd.hpp). The engine
// moves and sums gradients without knowing their type, so autograd/ stays below dtensor/.
class GradientValue {
 public:
  virtual ~GradientValue() = default;
  // this + other, both of the same kind (AutogradError otherwise).
  virtual std::shared_ptr<const GradientValue> plus(const GradientValue& other) const = 0;
};

// What travels along an edge: a local Tensor, another GradientValue, or nothing (undefined).
class Gradient {
 public:
  Gradient() = default;
  Gradient(Tensor tensor) : tensor_(std::move(tensor)) {}  // NOLINT: implicit, formulas return Tensors
  explicit Gradient(std::shared_ptr<const GradientValue> value) : value_(std::move(value)) {}

  bool defined() const { return tensor_.defined() || value_; }
  // The local tensor (AutogradError naming `op` when this gradient is another kind of value).
  const Tensor& tensor(const char* op) const;
  const GradientValue* value() const { return value_.get(); }
  // The sum of two gradients reaching the same output; an undefined one counts as zero.
  Gradient plus(const Gradient& other) const;

 private:
  Tensor tensor_;
  std::shared_ptr<const GradientValue> value_;
};
using Gradients = std::vector<Gradient>;

// Where a node sends the gradient of one of its inputs: output input_nr of `node`.
struct Edge {
  std::shared_ptr<Node> node;
  uint32_t input_nr = 0;
};

class Node {
 public:
  Node(std::vector<Edge> next_edges, size_t num_outputs);
  // Frees the chain of nodes only this one owns in a loop, not by recursion, so that dropping a
  // graph hundreds of thousands of ops deep does not overflow the stack.
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  virtual const char* name() const = 0;
  // One gradient per output (undefined where none arrived) -> one per next edge (undefined where
  // the input needs none).
  virtual Gradients apply(const Gradients& output_grads) = 0;
  // Frees what the backward needed; called by the engine right after apply unless retain_graph.
  virtual void release_saved() {}

  const std::vector<Edge>& next_edges() const { return next_edges_; }
  size_t num_outputs() const { return num_outputs_; }

 private:
  // Moves the next nodes nothing else owns into `orphans`, leaving this node's edges empty.
  void hand_over_sole_owned(std::vector<std::shared_ptr<Node>>& orphans);

  std::vector<Edge> next_edges_;
  size_t num_outputs_;
};

// What the node of every recorded op does around its backward formula, local or distributed
// (dtensor/autograd/node.hpp): nothing when no gradient arrived, an AutogradError when the saved
// state was freed, then the formula, and each gradient an input wants checked against that input.
class OpNode : public Node {
 public:
  OpNode(const char* name, std::vector<Edge> next_edges, size_t num_outputs)
      : Node(std::move(next_edges), num_outputs), name_(name) {}

  const char* name() const final { return name_; }
  Gradients apply(const Gradients& output_grads) final;

  // For the backward formula: whether input i wants a gradient.
  bool needs_grad(size_t input) const { return bool(next_edges()[input].node); }

 protected:
  // The formula: one gradient per next edge (undefined ones allowed).
  virtual Gradients compute(const Gradients& output_grads) = 0;
  // A formula's mistake surfaces here, naming the op, rather than as a wrong leaf gradient.
  virtual void check_gradient(const Gradient& gradient, size_t input) const = 0;
  // Called by release_saved once it freed something: a later apply is then an AutogradError.
  void mark_released() { saved_released_ = true; }

 private:
  const char* name_;
  bool saved_released_ = false;
};

// The node of one recorded op on local tensors: its saved tensors and its backward formula.
class FunctionNode final : public OpNode {
 public:
  using Backward = std::function<Grads(const FunctionNode& node, const Grads& output_grads)>;

  FunctionNode(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> saved, size_t num_outputs,
               Backward backward);

  void release_saved() override;

  // For the backward formula: the i-th tensor the forward saved.
  const Tensor& saved(size_t i) const { return saved_[i]; }

 private:
  Gradients compute(const Gradients& output_grads) override;
  void check_gradient(const Gradient& gradient, size_t input) const override;

  std::vector<Tensor> saved_;
  std::vector<Shape> input_shapes_;
  std::vector<DType> input_dtypes_;
  Backward backward_;
};

// The sink of a leaf: adds the gradient that reaches it into the leaf's grad.
class AccumulateGrad final : public Node {
 public:
  AccumulateGrad(std::shared_ptr<AutogradMeta> leaf, Shape shape, DType dtype);

  const char* name() const override { return "AccumulateGrad"; }
  Gradients apply(const Gradients& output_grads) override;

 private:
  std::shared_ptr<AutogradMeta> leaf_;
  Shape shape_;
  DType dtype_;
};

// True when an op on these inputs must record: one of them requires a gradient and grad mode is on.
template <typename... Tensors>
bool should_record(const Tensors&... inputs) {
  auto wants = [](const Tensor& t) { return t.autograd_meta() && t.autograd_meta()->requires_grad; };
  return (wants(inputs) || ...) && grad_mode_enabled();
}
bool should_record_any(const std::vector<Tensor>& inputs);

// set_requires_grad for any handle whose autograd slot holds a Meta (an AutogradMeta): Tensor's
// here, DTensor's in dtensor/autograd/. `defined` and `dtype` are the handle's.
template <typename Meta, typename Handle>
void mark_requires_grad(Handle& tensor, bool defined, DType dtype, bool wanted) {
  check<ValueError>(defined, "set_requires_grad", "tensor is undefined");
  const auto& meta = tensor.autograd_meta();
  if (meta && meta->grad_fn) {
    fail<ValueError>("set_requires_grad", "tensor is the output of {}, not a leaf; detach() it to make a new leaf",
                     meta->grad_fn->name());
  }
  check<DTypeError>(!wanted || is_floating(dtype), "set_requires_grad",
                    "only floating tensors can require a gradient, tensor is {}", dtype);
  if (!meta) {
    if (!wanted) return;
    tensor.set_autograd_meta(std::make_shared<Meta>());
  }
  tensor.autograd_meta()->requires_grad = wanted;
}

// The edge through which a gradient for `tensor` travels (empty when it needs none).
Edge gradient_edge(const Tensor& tensor);
// The same for any handle's slot: the producing node, else the leaf's accumulator, made by
// `make_accumulator` on first use and shared (weakly) by every later use of the leaf.
Edge gradient_edge(const std::shared_ptr<AutogradMeta>& meta,
                   const std::function<std::shared_ptr<Node>()>& make_accumulator);

// The engine (engine.cpp): runs the graph below `root` with d loss / d root = `seed`, under
// NoGradGuard. backward(Tensor) and the DTensor form (dtensor/autograd.hpp) check the root and
// seed and call this.
void run_backward(const Edge& root, Gradient seed, bool retain_graph);

// backward's checks of the seed gradient, for Tensor and DTensor roots alike: left out
// (`given` false) only for a one-element root, else the root's shape and dtype (ShapeError /
// DTypeError naming both).
void check_seed(const Shape& root_shape, DType root_dtype, bool given, const Shape& shape, DType dtype);

// Makes `outputs` the outputs of a new node over `inputs` (the tensors whose gradients the
// backward returns, in order) that keeps `saved` until its backward has run.
void record(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> saved,
            const std::vector<Tensor*>& outputs, FunctionNode::Backward backward);

// The one-output form: the backward receives the output's gradient; returns the recorded output.
using SingleOutputBackward = std::function<Grads(const FunctionNode& node, const Tensor& grad)>;
Tensor record(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> saved, Tensor output,
              SingleOutputBackward backward);

}  // namespace autograd
}  // namespace dtensor
