#include "optim/fused_cpu.hpp"

#include "tensor/cpu/threads.hpp"

#include <cmath>
#include <type_traits>

namespace dtensor::optim::detail {

namespace {

constexpr int64_t kParallelFrom = int64_t(1) << 15;  // elements; smaller updates stay on one thread

// Which of the buffer's forms runs is a template argument, so the loop has no branch and
// vectorizes. A weight decay of 0 adds 0 * p, which leaves the gradient unchanged.
template <typename T, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_loop(T* p, const T* g, T* buffer, int64_t n, const SGDStep& s) {
  const T lr = T(s.lr), momentum = T(s.momentum), keep = T(1 - s.dampening), decay = T(s.weight_decay);
#pragma omp parallel for schedule(static) num_threads(cpu::kernel_threads()) if (n >= kParallelFrom)
  for (int64_t i = 0; i < n; ++i) {
    T d = g[i] + decay * p[i];
    if constexpr (kMomentum) {
      buffer[i] = kFirst ? d : buffer[i] * momentum + keep * d;
      d = kNesterov ? d + momentum * buffer[i] : buffer[i];
    }
    p[i] = p[i] + -lr * d;
  }
}

template <typename T>
auto sgd_loop_for(const SGDStep& s, bool momentum) {
  if (!momentum) return sgd_loop<T, false, false, false>;
  if (s.first) return s.nesterov ? sgd_loop<T, true, true, true> : sgd_loop<T, true, true, false>;
  return s.nesterov ? sgd_loop<T, true, false, true> : sgd_loop<T, true, false, false>;
}

// lerp_ for the first moment (weight 1 - beta1 below 0.5: self + weight * (end - self), else
// end - (end - self) * (1 - weight)), addcmul_ for the second, addcdiv_ for the parameter. The
// lerp's form is a template argument so the loop has no branch and vectorizes.
template <typename T, bool kLowWeight>
void adamw_loop(T* p, const T* g, T* m, T* v, int64_t n, const AdamWStep& s) {
  const T decay = T(1 - s.lr * s.weight_decay), weight = T(1 - s.beta1), beta2 = T(s.beta2),
          one_minus_beta2 = T(1 - s.beta2), correction = T(s.bias_correction2_sqrt), eps = T(s.eps),
          step = T(-s.step_size);
#pragma omp parallel for schedule(static) num_threads(cpu::kernel_threads()) if (n >= kParallelFrom)
  for (int64_t i = 0; i < n; ++i) {
    const T param = p[i] * decay;
    m[i] = kLowWeight ? m[i] + weight * (g[i] - m[i]) : g[i] - (g[i] - m[i]) * (1 - weight);
    v[i] = v[i] * beta2 + one_minus_beta2 * g[i] * g[i];
    const T denom = std::sqrt(v[i]) / correction + eps;
    p[i] = param + step * m[i] / denom;
  }
}

}  // namespace

bool fusable(const Tensor& param, std::initializer_list<Tensor> others) {
  auto plain = [&](const Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.is_contiguous() && t.dtype() == param.dtype() &&
           t.shape() == param.shape();
  };
  if (!plain(param) || (param.dtype() != DType::F32 && param.dtype() != DType::F64)) return false;
  for (const Tensor& t : others) {
    if (!plain(t)) return false;
  }
  return true;
}

void sgd_fused(const Tensor& param, const Tensor& grad, const Tensor& buffer, const SGDStep& step) {
  visit_dtype(param.dtype(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<T>) {
      T* buffer_data = buffer.defined() ? buffer.data<T>() : nullptr;
      sgd_loop_for<T>(step, buffer_data != nullptr)(param.data<T>(), grad.data<T>(), buffer_data, param.numel(), step);
    }
  });
}

void adamw_fused(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const AdamWStep& step) {
  visit_dtype(param.dtype(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<T>) {
      auto loop = 1 - step.beta1 < 0.5 ? adamw_loop<T, true> : adamw_loop<T, false>;
      loop(param.data<T>(), grad.data<T>(), exp_avg.data<T>(), exp_avg_sq.data<T>(), param.numel(), step);
    }
  });
}

double sum_of_squares_fused(const Tensor& values) {
  double sum = 0;
  visit_dtype(values.dtype(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<T>) {
      const T* x = values.data<T>();
      const int64_t n = values.numel();
#pragma omp parallel for simd schedule(static) num_threads(cpu::kernel_threads()) if (n >= kParallelFrom) \
    reduction(+ : sum)
      for (int64_t i = 0; i < n; ++i) sum += double(x[i]) * double(x[i]);
    }
  });
  return sum;
}

void scale_fused(const Tensor& values, double factor) {
  visit_dtype(values.dtype(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<T>) {
      T* x = values.data<T>();
      const T f = T(factor);
      const int64_t n = values.numel();
#pragma omp parallel for schedule(static) num_threads(cpu::kernel_threads()) if (n >= kParallelFrom)
      for (int64_t i = 0; i < n; ++i) x[i] *= f;
    }
  });
}

}  // namespace dtensor::optim::detail
