// Adam with decoupled weight decay, as torch.optim.AdamW (docs/design.md section 14).
#pragma once

#include "optim/optimizer.hpp"

namespace dtensor::optim {

// torch.optim.AdamW's options and defaults (betas = (beta1, beta2)). Designated initializers read
// as keywords: AdamW(params, {.lr = 3e-4, .beta2 = 0.95}).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// Per parameter with gradient g, at its t-th update (torch's update, in the parameter's dtype,
// f32 for 16-bit ones), weight decay applied to every parameter given:
//   p *= 1 - lr * weight_decay
//   m  = m + (1 - beta1) * (g - m)            v = beta2 * v + (1 - beta2) * g * g
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// States "exp_avg" (m) and "exp_avg_sq" (v), zeros before the first update.
class AdamW : public Optimizer {
 public:
  // ValueError naming the option: lr or weight_decay negative, beta1 or beta2 outside [0, 1),
  // eps not positive. Parameters are checked as Optimizer's constructor says.
  AdamW(NamedParameters params, AdamWOptions options = {});

  void step() override;
  const AdamWOptions& options() const { return options_; }
  // How many updates parameter `param_name` has had (torch's per-parameter "step").
  int64_t step_count(const std::string& param_name) const;

 private:
  void update(size_t i, const Tensor& grad);

  AdamWOptions options_;
  std::vector<int64_t> steps_;  // per parameter
};

}  // namespace dtensor::optim
