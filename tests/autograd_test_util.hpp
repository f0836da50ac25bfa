// Helpers of the autograd suite: f64 inputs of odd shapes, non-contiguous views, and a gradcheck
// that reports the failing element.
#pragma once

#include "autograd/autograd.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <catch2/catch.hpp>

#include <vector>

namespace ag = dtensor::autograd;
using dtensor::DType;
using dtensor::Shape;
using dtensor::Tensor;

inline Tensor normal(const Shape& shape, uint64_t seed, DType dtype = DType::F64) {
  return dtensor::random(shape, dtype, {.seed = seed, .distribution = dtensor::Distribution::Normal});
}

// Uniform in [low, high): inputs of log, sqrt, div's denominator.
inline Tensor uniform(const Shape& shape, uint64_t seed, double low, double high) {
  return dtensor::random(shape, DType::F64, {.seed = seed, .a = low, .b = high});
}

// A [rows, cols] view of a [cols, rows] tensor: transposed strides.
inline Tensor transposed_normal(int64_t rows, int64_t cols, uint64_t seed) {
  Tensor t = normal({cols, rows}, seed).transpose(0, 1);
  REQUIRE_FALSE(t.is_contiguous());
  return t;
}

// A view of `shape` whose last dim is narrowed out of a wider tensor: gapped rows.
inline Tensor narrowed_normal(Shape shape, uint64_t seed) {
  Shape wider = shape;
  wider.back() += 3;
  Tensor t = normal(wider, seed).narrow(-1, 1, shape.back());
  REQUIRE_FALSE(t.is_contiguous());
  return t;
}

inline void require_gradcheck(const ag::GradcheckFn& fn, const std::vector<Tensor>& inputs,
                              const ag::GradcheckOptions& options = {}) {
  ag::GradcheckResult result = ag::gradcheck(fn, inputs, options);
  INFO(result.report);
  REQUIRE(result.elements_checked > 0);
  REQUIRE(result.passed);
}
