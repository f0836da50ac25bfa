#include "optim/sgd.hpp"

#include "autograd/autograd.hpp"
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

// torch.optim.SGD's _single_tensor_sgd, each product and sum rounded as its in-place ops round.
void SGD::update(size_t i, const Tensor& grad) {
  const Tensor& param = params_[i].second->local();
  const DType dtype = detail::compute_dtype(param.dtype());
  Tensor p = param.to(dtype);
  Tensor g = grad.to(dtype);
  if (options_.weight_decay != 0) g = add(g, mul(p, options_.weight_decay));
  if (options_.momentum != 0) {
    Tensor buffer;
    if (has_state(i, "momentum_buffer")) {
      buffer =
          add(mul(state_or_zeros(i, "momentum_buffer").local(), options_.momentum), mul(g, 1 - options_.dampening));
    } else {
      buffer = g.shares_storage(grad) ? g.clone() : g;  // never the gradient's own buffer, which zero_grad zeros
    }
    set_state(i, "momentum_buffer", buffer);
    g = options_.nesterov ? add(g, mul(buffer, options_.momentum)) : buffer;
  }
  param.copy_from(add(p, mul(g, -lr())));
}

}  // namespace dtensor::optim
