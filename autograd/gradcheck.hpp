// Checks a backward against f64 central finite differences (as torch.autograd.gradcheck's fast
// mode): with out = fn(inputs) and a fixed random v of out's shape, the gradient backward gives
// for the loss sum(out * v) must equal, element by element of every floating input,
// (L(x + eps) - L(x - eps)) / (2 eps) within atol + rtol * |numeric|.
//
//   GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return autograd::mul(in[0], in[1]); },
//                                 {random({3, 4}, DType::F64, {}), random({4}, DType::F64, {.seed = 1})});
//   REQUIRE(r.passed);  // else r.report names the input, the element and both values
//
// Floating inputs must be f64 (DTypeError otherwise) and are used as given, views included, so
// non-contiguous layouts are checked too; other inputs (ids, masks) pass through unchanged.
// Perturbations are written into the inputs' storage in place and restored.
#pragma once

#include "tensor/tensor.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dtensor::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 7;  // of v
};

struct GradcheckResult {
  bool passed = true;
  double max_abs_error = 0.0;  // largest |analytic - numeric| over every element checked
  int64_t elements_checked = 0;
  std::string report;  // the first failing element, or empty
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace dtensor::autograd
