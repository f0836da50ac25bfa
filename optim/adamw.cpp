#include "optim/adamw.hpp"

#include "autograd/autograd.hpp"
#include "optim/fused_cpu.hpp"
#include "tensor/ops.hpp"

#include <cmath>

namespace dtensor::optim {

namespace {

const AdamWOptions& checked(const AdamWOptions& options) {
  check(std::isfinite(options.weight_decay) && options.weight_decay >= 0, "AdamW",
        "weight_decay must be a finite value >= 0, got {}", options.weight_decay);
  check(options.beta1 >= 0 && options.beta1 < 1, "AdamW", "beta1 must be in [0, 1), got {}", options.beta1);
  check(options.beta2 >= 0 && options.beta2 < 1, "AdamW", "beta2 must be in [0, 1), got {}", options.beta2);
  check(std::isfinite(options.eps) && options.eps > 0, "AdamW", "eps must be a finite value > 0, got {}", options.eps);
  return options;
}

}  // namespace

AdamW::AdamW(NamedParameters params, AdamWOptions options)
    : Optimizer(std::move(params), options.lr, "AdamW"), options_(checked(options)), steps_(params_.size(), 0) {}

void AdamW::step() {
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = detail::local_grad(*params_[i].second);
    if (grad.defined()) update(i, grad);
  }
}

int64_t AdamW::step_count(const std::string& param_name) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].first == param_name) return steps_[i];
  }
  fail("AdamW", "parameter \"{}\" is not one of this optimizer's parameters", param_name);
}

// torch.optim.AdamW's _single_tensor_adam with decoupled weight decay: one fused pass where the
// tensors allow it, else the same update as ops, each rounded as its in-place op rounds (lerp_ for
// the first moment, addcmul_ for the second, addcdiv_ for the parameter). States are updated in
// place either way.
void AdamW::update(size_t i, const Tensor& grad) {
  const Tensor& param = params_[i].second->local();
  const Tensor m = state_or_zeros(i, "exp_avg").local();
  const Tensor v = state_or_zeros(i, "exp_avg_sq").local();
  const double t = double(++steps_[i]);
  const detail::AdamWStep step{.lr = lr(),
                               .beta1 = options_.beta1,
                               .beta2 = options_.beta2,
                               .eps = options_.eps,
                               .weight_decay = options_.weight_decay,
                               .step_size = lr() / (1 - std::pow(options_.beta1, t)),
                               .bias_correction2_sqrt = std::sqrt(1 - std::pow(options_.beta2, t))};
  if (detail::fusable(param, {grad, m, v})) return detail::adamw_fused(param, grad, m, v, step);

  const DType dtype = m.dtype();
  Tensor p = mul(param.to(dtype), 1 - step.lr * step.weight_decay);
  Tensor g = grad.to(dtype);
  m.copy_from(add(m, mul(sub(g, m), 1 - step.beta1)));
  v.copy_from(add(mul(v, step.beta2), mul(mul(g, g), 1 - step.beta2)));
  Tensor denom = add(div(sqrt(v), Tensor::full({}, step.bias_correction2_sqrt, dtype, v.device())), step.eps);
  param.copy_from(add(p, mul(div(m, denom), -step.step_size)));
}

}  // namespace dtensor::optim
