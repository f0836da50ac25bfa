// Test helpers for the optim suite: parameters (DTensor or plain leaves) with gradients given
// through backward, the blocks to compare with, and torch's updates written by hand over whole
// tensors as plain loops in f64, independent of optim/.
#pragma once

#include "dtensor_ops_check.hpp"
#include "placement_lists.hpp"

#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "nn/value.hpp"

#include <cmath>
#include <optional>
#include <vector>

namespace dtensor::testing {

namespace ag = dtensor::autograd;

// A leaf that requires a gradient: `full` distributed over `mesh` with `placements`, or a plain
// tensor (a copy of `full`) without placements.
inline nn::Value make_param(const Tensor& full, const DeviceMesh& mesh, const std::optional<Placements>& placements) {
  if (!placements) {
    Tensor p = full.clone();
    ag::set_requires_grad(p);
    return p;
  }
  DTensor p = DTensor::distribute(full, mesh, *placements);
  ag::set_requires_grad(p);
  return p;
}

// Adds the whole gradient `g` into the parameter's gradient: backward of sum(param * g), g laid
// out as the parameter.
inline void give_grad(const nn::Value& param, const Tensor& g) {
  if (param.is_distributed()) {
    const DTensor& p = param.dtensor();
    ag::backward(ag::sum(ag::mul(p, DTensor::distribute(g, p.mesh(), p.placements()))));
  } else {
    ag::backward(ag::sum(ag::mul(param.tensor(), g)));
  }
}

// This rank's block of the whole tensor `full` laid out as `like` (all of it for a plain tensor).
inline Tensor block_like(const nn::Value& like, const Tensor& full) {
  if (!like.is_distributed()) return full;
  const DTensor& d = like.dtensor();
  return DTensor::distribute(full, d.mesh(), d.placements()).to_local();
}

// This rank's block of the parameter's gradient.
inline Tensor grad_block(const nn::Value& param) {
  return param.is_distributed() ? ag::grad(param.dtensor()).to_local() : ag::grad(param.tensor());
}

inline std::vector<double> values_of(const Tensor& t) { return t.to_vector<double>(); }
inline Tensor tensor_of(const std::vector<double>& values, const Shape& shape) {
  return Tensor::from_vector(values, shape);
}

// torch.optim.SGD's update on whole tensors.
struct ReferenceSGD {
  double momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  std::vector<double> p = {}, buffer = {};

  void step(const std::vector<double>& grad, double lr) {
    const bool first = buffer.empty();
    buffer.resize(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      double d = grad[i] + weight_decay * p[i];
      if (momentum != 0) {
        buffer[i] = first ? d : momentum * buffer[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buffer[i] : buffer[i];
      }
      p[i] -= lr * d;
    }
  }
};

// torch.optim.AdamW's update on whole tensors.
struct ReferenceAdamW {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
  std::vector<double> p = {}, m = {}, v = {};
  int t = 0;

  void step(const std::vector<double>& grad, double lr) {
    m.resize(p.size());
    v.resize(p.size());
    ++t;
    const double correction1 = 1 - std::pow(beta1, t), correction2 = 1 - std::pow(beta2, t);
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * weight_decay;
      m[i] = beta1 * m[i] + (1 - beta1) * grad[i];
      v[i] = beta2 * v[i] + (1 - beta2) * grad[i] * grad[i];
      p[i] -= lr / correction1 * m[i] / (std::sqrt(v[i]) / std::sqrt(correction2) + eps);
    }
  }
};

}  // namespace dtensor::testing
