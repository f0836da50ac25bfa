// Stochastic gradient descent with momentum, as torch.optim.SGD (docs/design.md section 14).
#pragma once

#include "optim/optimizer.hpp"

namespace dtensor::optim {

// torch.optim.SGD's options and defaults. Designated initializers read as keywords:
// SGD(params, {.lr = 0.1, .momentum = 0.9, .nesterov = true}).
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
};

// Per parameter with gradient g (torch's update, in the parameter's dtype, f32 for 16-bit ones):
//   g += weight_decay * p
//   b  = g on the first step, else momentum * b + (1 - dampening) * g      (when momentum != 0)
//   g  = g + momentum * b with nesterov, else b                            (when momentum != 0)
//   p -= lr * g
// State "momentum_buffer" (b), only when momentum != 0.
class SGD : public Optimizer {
 public:
  // ValueError naming the option: lr, momentum or weight_decay negative; nesterov without a
  // positive momentum and zero dampening. Parameters are checked as Optimizer's constructor says.
  SGD(NamedParameters params, SGDOptions options = {});

  void step() override;
  const SGDOptions& options() const { return options_; }

 private:
  void update(size_t i, const Tensor& grad);

  SGDOptions options_;
};

}  // namespace dtensor::optim
