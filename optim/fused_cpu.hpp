// The optimizers' updates (and clip_grad_norm's sum of squares) as one threaded pass over CPU memory, used where the
// parameter, its gradient and its states are contiguous CPU tensors of the compute dtype (f32 or f64 parameters, the
// usual case); elsewhere (16-bit parameters, strided views, device tensors) the optimizers run the same update as
// tensor ops. Each element is computed as torch's in-place ops compute it, in the same order with the same roundings,
// so both paths give torch's values.
#pragma once

#include "tensor/tensor.hpp"

#include <initializer_list>

namespace dtensor::optim::detail {

// Whether the fused loops apply: every tensor defined, on the CPU, contiguous, of param's dtype,
// which is f32 or f64, and of param's shape.
bool fusable(const Tensor& param, std::initializer_list<Tensor> others);

struct SGDStep {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first;  // the buffer is set to the gradient rather than updated
};
// `buffer` is undefined when momentum is 0.
void sgd_fused(const Tensor& param, const Tensor& grad, const Tensor& buffer, const SGDStep& step);

struct AdamWStep {
  double lr, beta1, beta2, eps, weight_decay;
  double step_size;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
};
void adamw_fused(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const AdamWStep& step);

// The sum of the squares of a fusable tensor's elements, accumulated in f64.
double sum_of_squares_fused(const Tensor& values);
// Multiplies a fusable tensor by `factor` in place.
void scale_fused(const Tensor& values, double factor);

}  // namespace dtensor::optim::detail
