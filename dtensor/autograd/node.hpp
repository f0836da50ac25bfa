// The autograd graph of DTensors (internal to dtensor/autograd/): the DTensor slot, DTensor
// gradients travelling through the engine of autograd/, the node of a recorded DTensor op and the
// accumulator of a DTensor leaf. An op writes forward and backward side by side:
//
//   DTensor neg(const DTensor& a) {
//     DTensor out = dtensor::neg(a);
//     if (!should_record(a)) return out;
//     return record("neg", {a}, {}, out, [](const DistributedNode&, const DTensor& grad) {
//       return DGrads{dtensor::neg(grad)};
//     });
//   }
#pragma once

#include "autograd/node.hpp"
#include "dtensor/autograd.hpp"
#include "dtensor/dtensor.hpp"

#include <functional>
#include <vector>

namespace dtensor {

// A DTensor's autograd state: that of a Tensor, and a leaf's gradient as a DTensor (the inherited
// `grad` stays unused).
struct DTensorAutogradMeta : AutogradMeta {
  DTensor dtensor_grad;  // leaves: the accumulated gradient, with the leaf's placements
};

namespace autograd {

using DGrads = std::vector<DTensor>;

// A DTensor as a Gradient. plus is dtensor::add, so two Partial(sum) gradients add locally and
// stay Partial(sum): nothing is reduced per use.
class DTensorGradient final : public GradientValue {
 public:
  explicit DTensorGradient(DTensor value) : value_(std::move(value)) {}
  const DTensor& value() const { return value_; }
  std::shared_ptr<const GradientValue> plus(const GradientValue& other) const override;

 private:
  DTensor value_;
};

// An undefined DTensor gives an undefined Gradient.
Gradient as_gradient(const DTensor& gradient);
// The DTensor a gradient holds (undefined when it is undefined; AutogradError naming `op` when it
// is a local Tensor).
DTensor as_dtensor(const Gradient& gradient, const char* op);

// What a node knows of one input, to check the gradient its formula returns.
struct InputSpec {
  Shape shape;  // global for a DTensor
  DType dtype;
  bool distributed;
};

// The node of one recorded op over DTensors and, for from_local / to_local, local tensors.
class DistributedNode final : public OpNode {
 public:
  using Backward = std::function<Gradients(const DistributedNode& node, const Gradients& output_grads)>;

  DistributedNode(const char* name, std::vector<Edge> edges, std::vector<InputSpec> inputs, DGrads saved,
                  size_t num_outputs, Backward backward);

  void release_saved() override;

  const DTensor& saved(size_t i) const { return saved_[i]; }
  // Other state the backward needs (a blockwise op's local graph), freed with the saved tensors.
  void hold(std::shared_ptr<void> state) { held_ = std::move(state); }
  template <typename T>
  T& held() const {
    return *static_cast<T*>(held_.get());
  }

 private:
  Gradients compute(const Gradients& output_grads) override { return backward_(*this, output_grads); }
  void check_gradient(const Gradient& gradient, size_t input) const override;

  std::vector<InputSpec> inputs_;
  DGrads saved_;
  std::shared_ptr<void> held_;
  Backward backward_;
};

// The sink of a DTensor leaf: redistributes the arriving gradient to the leaf's placements (once:
// the engine has already summed every path's gradient) and adds it into the leaf's gradient.
class AccumulateDTensorGrad final : public Node {
 public:
  AccumulateDTensorGrad(std::shared_ptr<DTensorAutogradMeta> leaf, const DTensor& like);

  const char* name() const override { return "AccumulateDTensorGrad"; }
  Gradients apply(const Gradients& output_grads) override;

 private:
  std::shared_ptr<DTensorAutogradMeta> leaf_;
  DeviceMesh mesh_;
  Placements placements_;
  Shape shape_;
  DType dtype_;
};

bool should_record(const DTensor& a);
bool should_record(const DTensor& a, const DTensor& b);
bool should_record(const DTensor& a, const DTensor& b, const DTensor& c);
Edge gradient_edge(const DTensor& tensor);
InputSpec spec_of(const DTensor& tensor);
InputSpec spec_of(const Tensor& tensor);
// Points the outputs' slots at `node` (output i is node output i).
void attach(const std::shared_ptr<Node>& node, DTensor& output, uint32_t output_nr);
void attach(const std::shared_ptr<Node>& node, Tensor& output, uint32_t output_nr);

// One DTensor output over DTensor inputs: the backward gets the output's gradient and returns one
// gradient per input (undefined where none is needed).
using DBackward = std::function<DGrads(const DistributedNode& node, const DTensor& grad)>;
DTensor record(const char* name, const std::vector<DTensor>& inputs, DGrads saved, DTensor output, DBackward backward);

}  // namespace autograd
}  // namespace dtensor
