#include "optim/sgd.hpp"

#include "autograd/autograd.hpp"
#include "optim/fused_cpu.hpp"
#include "tensor/ops.hpp"

#include <cmath>

namespace dtensor::optim {

namespace {

void check_non_negative(double value, const char* option) {
  check(std::isfinite(value) && value >= 0, "SGD", "{} must be a finite value >= 0, got {}", option, value);
}

const SGDOptions& checked(const SGDOptions& options) {
  check_non_negative(options.momentum, "momentum");
  check_non_negative(options.weight_decay, "weight_decay");
  check(std::isfinite(options.dampening), "SGD", "dampening must be finite, got {}", options.dampening);
  check(!options.nesterov || (options.momentum > 0 && options.dampening == 0), "SGD",
        "nesterov needs a momentum > 0 and a dampening of 0, got momentum {} and dampening {}", options.momentum,
        options.dampening);
  return options;
}

}  // namespace

SGD::SGD(NamedParameters params, SGDOptions options)
    : Optimizer(std::move(params), options.lr, "SGD"), options_(checked(options)) {}

void SGD::step() {
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = detail::local_grad(*params_[i].second);
    if (grad.defined()) update(i, grad);
  }
}

// torch.optim.SGD's _single_tensor_sgd: one fused pass where the tensors allow it (the momentum
// buffer updated in place), else the same update as ops, each rounded as its in-place op rounds.
void SGD::update(size_t i, const Tensor& grad) {
  const Tensor& param = params_[i].second->local();
  const bool first = !has_state(i, "momentum_buffer");
  const bool momentum = options_.momentum != 0;
  const Tensor buffer = momentum ? state_or_zeros(i, "momentum_buffer").local() : Tensor();
  if (detail::fusable(param,
                      momentum ? std::initializer_list<Tensor>{grad, buffer} : std::initializer_list<Tensor>{grad})) {
    detail::sgd_fused(param, grad, buffer,
                      {.lr = lr(),
                       .momentum = options_.momentum,
                       .dampening = options_.dampening,
                       .weight_decay = options_.weight_decay,
                       .nesterov = options_.nesterov,
                       .first = first});
    return;
  }
  const DType dtype = detail::compute_dtype(param.dtype());
  Tensor p = param.to(dtype);
  Tensor g = grad.to(dtype);
  if (options_.weight_decay != 0) g = add(g, mul(p, options_.weight_decay));
  if (momentum) {
    Tensor updated = first ? g : add(mul(buffer, options_.momentum), mul(g, 1 - options_.dampening));
    buffer.copy_from(updated);
    g = options_.nesterov ? add(g, mul(buffer, options_.momentum)) : buffer;
  }
  param.copy_from(add(p, mul(g, -lr())));
}

}  // namespace dtensor::optim
