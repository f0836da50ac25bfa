#include "autograd/gradcheck.hpp"

#include "autograd/autograd.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <cmath>

namespace dtensor::autograd {
namespace {

// Leaves of the floating inputs, sharing their storage and layout; other inputs unchanged.
std::vector<Tensor> make_leaves(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor leaf = detach(inputs[i]);
    if (is_floating(leaf.dtype())) {
      check<DTypeError>(leaf.dtype() == DType::F64, "gradcheck", "inputs[{}] is {}; finite differences need f64", i,
                        leaf.dtype());
      set_requires_grad(leaf);
    }
    leaves.push_back(leaf);
  }
  return leaves;
}

// A zero-dim view of element `index` (row-major) of t, whatever its strides. Selecting from the
// last dim first leaves the earlier dims where they were.
Tensor element_view(const Tensor& t, int64_t index) {
  Tensor element = t;
  for (int64_t d = t.dim() - 1, rest = index; d >= 0; --d) {
    element = element.select(d, rest % t.size(d));
    rest /= t.size(d);
  }
  return element;
}

// sum(fn(inputs) * v) without recording.
double weighted_sum(const GradcheckFn& fn, const std::vector<Tensor>& leaves, const Tensor& v) {
  NoGradGuard no_grad;
  return dtensor::sum(dtensor::mul(fn(leaves), v)).item<double>();
}

double numeric_derivative(const GradcheckFn& fn, const std::vector<Tensor>& leaves, const Tensor& element,
                          const Tensor& v, double eps) {
  double x = element.item<double>();
  element.fill(x + eps);
  double above = weighted_sum(fn, leaves, v);
  element.fill(x - eps);
  double below = weighted_sum(fn, leaves, v);
  element.fill(x);
  return (above - below) / (2.0 * eps);
}

void compare_input(const GradcheckFn& fn, const std::vector<Tensor>& leaves, size_t input, const Tensor& v,
                   const GradcheckOptions& options, GradcheckResult& result) {
  Tensor analytic = grad(leaves[input]);
  std::vector<double> analytic_values =
      analytic.defined() ? analytic.to_vector<double>() : std::vector<double>(size_t(leaves[input].numel()), 0.0);
  for (int64_t j = 0; j < leaves[input].numel(); ++j) {
    double numeric = numeric_derivative(fn, leaves, element_view(leaves[input], j), v, options.eps);
    double error = std::abs(analytic_values[j] - numeric);
    result.max_abs_error = std::max(result.max_abs_error, error);
    ++result.elements_checked;
    if (result.passed && !(error <= options.atol + options.rtol * std::abs(numeric))) {
      result.passed = false;
      result.report = fmt::format("inputs[{}] element {}: analytic {:.10g}, numeric {:.10g}", input, j,
                                  analytic_values[j], numeric);
    }
  }
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  std::vector<Tensor> leaves = make_leaves(inputs);
  Tensor out = fn(leaves);
  check<ValueError>(requires_grad(out), "gradcheck", "fn's output {} does not depend on a floating input",
                    out.to_string());
  Tensor v = random(out.shape(), out.dtype(), {.seed = options.seed, .distribution = Distribution::Normal});
  backward(out, v);
  GradcheckResult result;
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (requires_grad(leaves[i])) compare_input(fn, leaves, i, v, options, result);
  }
  return result;
}

}  // namespace dtensor::autograd
