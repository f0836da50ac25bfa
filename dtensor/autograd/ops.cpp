// The differentiable DTensor ops, forward and backward side by side. Each backward is written with
// the ops of dtensor/ops.hpp, so their sharding rules decide the gradient placements: e.g. the
// input gradient of a column-parallel linear comes out P(sum) and stays so until a leaf or an op
// needs it whole.
#include "dtensor/ops.hpp"
#include "dtensor/autograd/methods.hpp"
#include "dtensor/autograd/node.hpp"
#include "tensor/ops.hpp"

namespace dtensor::autograd {

namespace {

// PyTorch's rule for the gradient of a layout: where the forward held a Partial, the gradient is
// Replicate (every rank's summand has the same derivative).
Placements partial_as_replicate(Placements placements) {
  for (Placement& p : placements) {
    if (p.is_partial()) p = Replicate();
  }
  return placements;
}

// The gradient of a tensor of `shape` broadcast to grad's shape: grad summed over the broadcast
// dims. Leading dims are reduced away and size-1 dims kept, so no reshape (which could gather an
// unevenly sharded dim) is needed.
DTensor sum_to_shape(const DTensor& grad, const Shape& shape) {
  DTensor summed = grad;
  const int64_t lead = grad.dim() - int64_t(shape.size());
  if (lead > 0) {
    std::vector<int64_t> leading(static_cast<size_t>(lead));
    for (int64_t d = 0; d < lead; ++d) leading[size_t(d)] = d;
    summed = dtensor::sum(summed, leading);
  }
  std::vector<int64_t> broadcast;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1 && summed.shape()[d] != 1) broadcast.push_back(int64_t(d));
  }
  if (!broadcast.empty()) summed = dtensor::sum(summed, broadcast, /*keepdim=*/true);
  return summed;
}

// What a reduction's backward needs of its input: enough to build zeros laid out like it.
struct Layout {
  DeviceMesh mesh;
  Placements placements;  // Partial read as Replicate: a Partial and a Replicate block have one shape
  Shape local_shape;
  Shape shape;
  DType dtype;
  Device device;
};

Layout layout_of(const DTensor& a) {
  return {a.mesh(),
          partial_as_replicate(a.placements()),
          a.local_tensor().shape(),
          a.shape(),
          a.dtype(),
          a.local_tensor().device()};
}

DTensor zeros_like(const Layout& layout) {
  Tensor zeros = Tensor::full(layout.local_shape, 0.0, layout.dtype, layout.device);
  return DTensor::from_local(zeros, layout.mesh, layout.placements, layout.shape);
}

// The gradient of reduce(a, dims, keepdim) spread back over a's shape: put back the reduced dims
// as size 1 and broadcast against zeros laid out like a, so a sharded a gets a sharded gradient.
DTensor expand_reduced(const DTensor& grad, const Layout& input, std::vector<int64_t> dims, bool keepdim) {
  const int64_t ndim = int64_t(input.shape.size());
  DTensor kept = grad;
  if (!keepdim) {
    Shape kept_shape = input.shape;
    if (dims.empty()) {
      for (int64_t d = 0; d < ndim; ++d) dims.push_back(d);
    }
    for (int64_t d : dims) kept_shape[size_t(normalize_dim(d, ndim, "sum"))] = 1;
    kept = dtensor::reshape(grad, kept_shape);
  }
  return dtensor::add(zeros_like(input), kept);
}

int64_t reduced_count(const Shape& shape, const std::vector<int64_t>& dims) {
  if (dims.empty()) return shape_numel(shape);
  int64_t count = 1;
  for (int64_t d : dims) count *= shape[size_t(normalize_dim(d, int64_t(shape.size()), "mean"))];
  return count;
}

void check_at_least_2d(const DTensor& t, const char* op, const char* argument) {
  check<ValueError>(t.dim() >= 2, op,
                    "{} is {}-D; the differentiable {} takes operands of at least 2 dims (reshape a vector first)",
                    argument, t.dim(), op);
}

}  // namespace

// Layouts ----------------------------------------------------------------------------------------

DTensor record_redistribute(const DTensor& source, DTensor out) {
  if (!should_record(source)) return out;
  return record(
      "redistribute", {source}, {}, std::move(out),
      [mesh = source.mesh(), placements = partial_as_replicate(source.placements())](
          const DistributedNode&, const DTensor& grad) { return DGrads{grad.redistribute(mesh, placements)}; });
}

DTensor record_from_local(const Tensor& local, DTensor out) {
  if (!autograd::should_record(local)) return out;
  auto backward = [mesh = out.mesh(), source = partial_as_replicate(out.placements())](const DistributedNode& node,
                                                                                       const Gradients& grads) {
    DTensor grad = as_dtensor(grads[0], node.name());
    return Gradients{grad.redistribute(mesh, source).local_tensor()};
  };
  auto node = std::make_shared<DistributedNode>("from_local", std::vector<Edge>{gradient_edge(local)},
                                                std::vector<InputSpec>{spec_of(local)}, DGrads{}, 1, backward);
  attach(node, out, 0);
  return out;
}

Tensor record_to_local(const DTensor& source, Tensor out, const Placements& grad_placements) {
  if (!should_record(source)) return out;
  Placements placements = grad_placements.empty() ? source.placements() : grad_placements;
  auto backward = [mesh = source.mesh(), placements = std::move(placements), shape = source.shape()](
                      const DistributedNode& node, const Gradients& grads) {
    const Tensor& grad = grads[0].tensor(node.name());
    return Gradients{as_gradient(DTensor::from_local(grad, mesh, placements, shape))};
  };
  auto node = std::make_shared<DistributedNode>("to_local", std::vector<Edge>{gradient_edge(source)},
                                                std::vector<InputSpec>{spec_of(source)}, DGrads{}, 1, backward);
  attach(node, out, 0);
  return out;
}

// The methods record (dtensor/autograd/methods.hpp); these forms exist to read alike beside the
// other autograd:: ops.
DTensor redistribute(const DTensor& a, const Placements& placements) { return a.redistribute(placements); }

DTensor from_local(const Tensor& local, const DeviceMesh& mesh, const Placements& placements,
                   const std::optional<Shape>& global_shape) {
  return DTensor::from_local(local, mesh, placements, global_shape);
}

Tensor to_local(const DTensor& a) { return a.to_local(); }

Tensor to_local(const DTensor& a, const Placements& grad_placements) {
  if (!should_record(a)) return a.local_tensor();
  Placements normalized = normalize_placements(grad_placements, a.dim(), a.mesh().ndim(), "to_local");
  return record_to_local(a, a.local_tensor(), normalized);
}

Tensor full_tensor(const DTensor& a) { return a.full_tensor(); }

// Elementwise ------------------------------------------------------------------------------------

DTensor add(const DTensor& a, const DTensor& b) {
  DTensor out = dtensor::add(a, b);
  if (!should_record(a, b)) return out;
  return record("add", {a, b}, {}, out, [sa = a.shape(), sb = b.shape()](const DistributedNode&, const DTensor& grad) {
    return DGrads{sum_to_shape(grad, sa), sum_to_shape(grad, sb)};
  });
}

DTensor sub(const DTensor& a, const DTensor& b) {
  DTensor out = dtensor::sub(a, b);
  if (!should_record(a, b)) return out;
  return record("sub", {a, b}, {}, out,
                [sa = a.shape(), sb = b.shape()](const DistributedNode& node, const DTensor& grad) {
                  DTensor gb = node.needs_grad(1) ? dtensor::neg(sum_to_shape(grad, sb)) : DTensor();
                  return DGrads{sum_to_shape(grad, sa), gb};
                });
}

DTensor mul(const DTensor& a, const DTensor& b) {
  DTensor out = dtensor::mul(a, b);
  if (!should_record(a, b)) return out;
  return record("mul", {a, b}, {a, b}, out, [](const DistributedNode& node, const DTensor& grad) {
    const DTensor &a = node.saved(0), &b = node.saved(1);
    DTensor ga = node.needs_grad(0) ? sum_to_shape(dtensor::mul(grad, b), a.shape()) : DTensor();
    DTensor gb = node.needs_grad(1) ? sum_to_shape(dtensor::mul(grad, a), b.shape()) : DTensor();
    return DGrads{ga, gb};
  });
}

// d(a / b) = grad / b for a, -grad * out / b for b.
DTensor div(const DTensor& a, const DTensor& b) {
  DTensor out = dtensor::div(a, b);
  if (!should_record(a, b)) return out;
  return record("div", {a, b}, {b, out}, out, [sa = a.shape()](const DistributedNode& node, const DTensor& grad) {
    const DTensor &b = node.saved(0), &out = node.saved(1);
    DTensor ga = node.needs_grad(0) ? sum_to_shape(dtensor::div(grad, b), sa) : DTensor();
    DTensor gb;
    if (node.needs_grad(1)) gb = sum_to_shape(dtensor::neg(dtensor::div(dtensor::mul(grad, out), b)), b.shape());
    return DGrads{ga, gb};
  });
}

DTensor add(const DTensor& a, double s) {
  DTensor out = dtensor::add(a, s);
  if (!should_record(a)) return out;
  return record("add", {a}, {}, out, [](const DistributedNode&, const DTensor& grad) { return DGrads{grad}; });
}

DTensor mul(const DTensor& a, double s) {
  DTensor out = dtensor::mul(a, s);
  if (!should_record(a)) return out;
  return record("mul", {a}, {}, out,
                [s](const DistributedNode&, const DTensor& grad) { return DGrads{dtensor::mul(grad, s)}; });
}

DTensor neg(const DTensor& a) {
  DTensor out = dtensor::neg(a);
  if (!should_record(a)) return out;
  return record("neg", {a}, {}, out,
                [](const DistributedNode&, const DTensor& grad) { return DGrads{dtensor::neg(grad)}; });
}

// Reductions -------------------------------------------------------------------------------------

DTensor sum(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  DTensor out = dtensor::sum(a, dims, keepdim);
  if (!should_record(a)) return out;
  return record("sum", {a}, {}, out,
                [input = layout_of(a), dims, keepdim](const DistributedNode&, const DTensor& grad) {
                  return DGrads{expand_reduced(grad, input, dims, keepdim)};
                });
}

DTensor mean(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  DTensor out = dtensor::mean(a, dims, keepdim);
  if (!should_record(a)) return out;
  const double scale = 1.0 / double(reduced_count(a.shape(), dims));
  return record("mean", {a}, {}, out,
                [input = layout_of(a), dims, keepdim, scale](const DistributedNode&, const DTensor& grad) {
                  return DGrads{expand_reduced(dtensor::mul(grad, scale), input, dims, keepdim)};
                });
}

// Views ------------------------------------------------------------------------------------------

DTensor reshape(const DTensor& a, const Shape& shape) {
  DTensor out = dtensor::reshape(a, shape);
  if (!should_record(a)) return out;
  return record("reshape", {a}, {}, out, [input = a.shape()](const DistributedNode&, const DTensor& grad) {
    return DGrads{dtensor::reshape(grad, input)};
  });
}

DTensor transpose(const DTensor& a, int64_t dim0, int64_t dim1) {
  DTensor out = dtensor::transpose(a, dim0, dim1);
  if (!should_record(a)) return out;
  return record("transpose", {a}, {}, out, [dim0, dim1](const DistributedNode&, const DTensor& grad) {
    return DGrads{dtensor::transpose(grad, dim0, dim1)};
  });
}

// Products ---------------------------------------------------------------------------------------

// d(a @ b) = grad @ b^T for a, a^T @ grad for b, each summed back over broadcast batch dims.
DTensor matmul(const DTensor& a, const DTensor& b) {
  check_at_least_2d(a, "matmul", "a");
  check_at_least_2d(b, "matmul", "b");
  DTensor out = dtensor::matmul(a, b);
  if (!should_record(a, b)) return out;
  return record("matmul", {a, b}, {a, b}, out, [](const DistributedNode& node, const DTensor& grad) {
    const DTensor &a = node.saved(0), &b = node.saved(1);
    DTensor ga, gb;
    if (node.needs_grad(0)) ga = sum_to_shape(dtensor::matmul(grad, dtensor::transpose(b, -1, -2)), a.shape());
    if (node.needs_grad(1)) gb = sum_to_shape(dtensor::matmul(dtensor::transpose(a, -1, -2), grad), b.shape());
    return DGrads{ga, gb};
  });
}

namespace {
// linear = x @ weight^T (+ bias): the input's gradient is grad @ weight, the weight's grad^T @ x
// summed over the batch dims, the bias's grad summed over all but the last dim. A colwise weight
// S(0) thus gives a P(sum) input gradient and an S(0) weight gradient with no communication.
DTensor record_linear(const DTensor& x, const DTensor& weight, const DTensor* bias, DTensor out) {
  std::vector<DTensor> inputs = {x, weight};
  if (bias) inputs.push_back(*bias);
  return record("linear", inputs, {x, weight}, out, [](const DistributedNode& node, const DTensor& grad) {
    const DTensor &x = node.saved(0), &weight = node.saved(1);
    DGrads grads(node.next_edges().size());
    if (node.needs_grad(0)) grads[0] = dtensor::matmul(grad, weight);
    if (node.needs_grad(1)) {
      grads[1] = sum_to_shape(dtensor::matmul(dtensor::transpose(grad, -1, -2), x), weight.shape());
    }
    if (grads.size() == 3 && node.needs_grad(2)) grads[2] = sum_to_shape(grad, {weight.shape()[0]});
    return grads;
  });
}

// A vector input is run as one row, so the backward formulas only see matrices and batches.
DTensor linear_of_vector(const DTensor& x, const DTensor& weight, const DTensor* bias) {
  DTensor row = autograd::reshape(x, {1, x.shape()[0]});
  DTensor out = bias ? autograd::linear(row, weight, *bias) : autograd::linear(row, weight);
  return autograd::reshape(out, {weight.shape()[0]});
}
}  // namespace

DTensor linear(const DTensor& x, const DTensor& weight) {
  if (x.dim() == 1 && should_record(x, weight)) return linear_of_vector(x, weight, nullptr);
  DTensor out = dtensor::linear(x, weight);
  if (!should_record(x, weight)) return out;
  return record_linear(x, weight, nullptr, out);
}

DTensor linear(const DTensor& x, const DTensor& weight, const DTensor& bias) {
  if (x.dim() == 1 && should_record(x, weight, bias)) return linear_of_vector(x, weight, &bias);
  DTensor out = dtensor::linear(x, weight, bias);
  if (!should_record(x, weight, bias)) return out;
  return record_linear(x, weight, &bias, out);
}

}  // namespace dtensor::autograd
