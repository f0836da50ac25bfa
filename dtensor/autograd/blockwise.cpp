// Ops that run blockwise: once Partial inputs are reduced and the dim they work along is whole,
// each rank's output block depends only on its own input blocks (unary math, softmax, the norms,
// cast). Their forward runs the local autograd op (autograd/ops.hpp) on the blocks, recording a
// local graph, and their backward is that graph's backward on the blocks: the formulas of the
// local phase, gradchecked there, serve DTensors unchanged. An input replicated over a mesh dim
// the output is sharded over (a norm's weight beside a row-sharded x) collects one summand per
// rank, so its gradient comes out P(sum) there and is reduced once, at the leaf or where needed.
#include "autograd/ops.hpp"
#include "dtensor/autograd/node.hpp"
#include "dtensor/ops.hpp"
#include "tensor/kernel_util.hpp"

#include <functional>

namespace dtensor::autograd {

namespace {

using LocalOp = std::function<Tensor(const std::vector<Tensor>& blocks)>;

// The local graph of one blockwise op: its input blocks as local leaves and its output.
struct LocalGraph {
  std::vector<Tensor> leaves;  // undefined where the input needs no gradient
  Tensor output;
};

// The layout a blockwise op reads an input in: Partial reduced, and `whole_dim` (if any) gathered.
Placements blockwise_layout(Placements placements, std::optional<int64_t> whole_dim = std::nullopt) {
  for (Placement& p : placements) {
    if (p.is_partial() || (whole_dim && p.is_shard(*whole_dim))) p = Replicate();
  }
  return placements;
}

// Where the output is sharded over a mesh dim and the input replicated, every rank's block adds
// one summand of the input's gradient.
Placements gradient_layout(Placements input, const Placements& output) {
  for (size_t m = 0; m < input.size(); ++m) {
    if (input[m].is_replicate() && output[m].is_shard()) input[m] = Partial();
  }
  return input;
}

std::shared_ptr<LocalGraph> run_local(const std::vector<DTensor>& inputs, const std::vector<DTensor>& ready,
                                      const LocalOp& local) {
  auto graph = std::make_shared<LocalGraph>();
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor block = autograd::detach(ready[i].local_tensor());
    if (requires_grad(inputs[i])) set_requires_grad(block);
    graph->leaves.push_back(block);
  }
  graph->output = local(graph->leaves);
  return graph;
}

// Runs `local` on the inputs' blocks laid out as `layouts`, giving the output's block laid out as
// `output_layout`, and records the node whose backward is the local graph's.
DTensor blockwise(const char* name, const std::vector<DTensor>& inputs, const std::vector<Placements>& layouts,
                  const Placements& output_layout, const Shape& output_shape, const LocalOp& local) {
  std::vector<DTensor> ready;
  std::vector<Edge> edges;
  std::vector<InputSpec> specs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DTensor& input = inputs[i];
    // Detached: this op records its own node over `input`, so moving it must record nothing.
    ready.push_back(input.placements() == layouts[i] ? input : autograd::detach(input).redistribute(layouts[i]));
    edges.push_back(gradient_edge(input));
    specs.push_back(spec_of(input));
  }
  std::shared_ptr<LocalGraph> graph = run_local(inputs, ready, local);
  const DeviceMesh& mesh = inputs[0].mesh();
  DTensor out = DTensor::from_local(autograd::detach(graph->output), mesh, output_layout, output_shape);
  auto backward = [name, mesh, layouts, output_layout, specs](const DistributedNode& node, const Gradients& grads) {
    LocalGraph& graph = node.held<LocalGraph>();
    DTensor grad = as_dtensor(grads[0], name).redistribute(mesh, output_layout);
    // retain_graph: the outer graph decides when the local one is freed (release_saved).
    autograd::backward(graph.output, grad.local_tensor(), /*retain_graph=*/true);
    Gradients input_grads(graph.leaves.size());
    for (size_t i = 0; i < graph.leaves.size(); ++i) {
      const Tensor& leaf = graph.leaves[i];
      if (!leaf.defined() || !requires_grad(leaf)) continue;
      // A copy: the leaf's buffer is reused (zeroed) by the next backward through this node.
      Tensor block = autograd::grad(leaf).clone();
      autograd::zero_grad(leaf);
      input_grads[i] =
          as_gradient(DTensor::from_local(block, mesh, gradient_layout(layouts[i], output_layout), specs[i].shape));
    }
    return input_grads;
  };
  auto node = std::make_shared<DistributedNode>(name, std::move(edges), std::move(specs), DGrads{}, 1, backward);
  node->hold(graph);
  attach(node, out, 0);
  return out;
}

// An op whose output is laid out as its first input (unary math, softmax, norms).
DTensor same_layout(const char* name, const std::vector<DTensor>& inputs, const std::vector<Placements>& layouts,
                    const LocalOp& local) {
  return blockwise(name, inputs, layouts, layouts[0], inputs[0].shape(), local);
}

// A unary op: blockwise on any layout without Partial.
DTensor unary(const char* name, const DTensor& a, Tensor (*local)(const Tensor&)) {
  return same_layout(name, {a}, {blockwise_layout(a.placements())},
                     [local](const std::vector<Tensor>& blocks) { return local(blocks[0]); });
}

// The layouts of a broadcasting elementwise op: the output takes the layout (Partial reduced) of
// the first input that has the output's shape, or is replicated when none has; each input is
// sharded where its dim lines up with a sharded output dim of the same size, else replicated (a
// broadcast input thus gets a P(sum) gradient there).
std::vector<Placements> elementwise_layouts(const std::vector<DTensor>& inputs, const Shape& out_shape,
                                            Placements& output) {
  output = Placements(inputs[0].placements().size(), Replicate());
  for (const DTensor& input : inputs) {
    if (input.shape() == out_shape) {
      output = blockwise_layout(input.placements());
      break;
    }
  }
  std::vector<Placements> layouts;
  for (const DTensor& input : inputs) {
    Placements layout(output.size(), Replicate());
    const int64_t lead = int64_t(out_shape.size()) - input.dim();
    for (size_t m = 0; m < output.size(); ++m) {
      if (!output[m].is_shard()) continue;
      const int64_t d = output[m].dim() - lead;
      if (d >= 0 && input.shape()[size_t(d)] == out_shape[size_t(output[m].dim())]) layout[m] = Shard(d);
    }
    layouts.push_back(layout);
  }
  return layouts;
}

DTensor elementwise(const char* name, const std::vector<DTensor>& inputs, const LocalOp& local) {
  Shape shape = inputs[0].shape();
  for (const DTensor& input : inputs) shape = dtensor::detail::broadcast_shapes(shape, input.shape(), name);
  Placements output;
  std::vector<Placements> layouts = elementwise_layouts(inputs, shape, output);
  return blockwise(name, inputs, layouts, output, shape, local);
}

// A reduction (amax / amin): the reduced dims are gathered; the output keeps the other dims'
// sharding, renumbered when the reduced dims are dropped.
DTensor reduction(const char* name, const DTensor& a, std::vector<int64_t> dims, bool keepdim, const LocalOp& local) {
  if (dims.empty()) {
    for (int64_t d = 0; d < a.dim(); ++d) dims.push_back(d);
  }
  std::vector<bool> reduced(size_t(a.dim()), false);
  for (int64_t d : dims) reduced[size_t(normalize_dim(d, a.dim(), name))] = true;
  Placements layout = blockwise_layout(a.placements()), output = layout;
  Shape shape;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (!reduced[size_t(d)] || keepdim) shape.push_back(reduced[size_t(d)] ? 1 : a.shape()[size_t(d)]);
  }
  for (size_t m = 0; m < layout.size(); ++m) {
    if (!layout[m].is_shard()) continue;
    const int64_t d = layout[m].dim();
    if (reduced[size_t(d)]) {
      layout[m] = output[m] = Replicate();
    } else if (!keepdim) {
      output[m] = Shard(d - int64_t(std::count(reduced.begin(), reduced.begin() + d, true)));
    }
  }
  return blockwise(name, {a}, {layout}, output, shape, local);
}

}  // namespace

#define DTENSOR_BLOCKWISE_UNARY(op)               \
  DTensor op(const DTensor& a) {                  \
    if (!should_record(a)) return dtensor::op(a); \
    return unary(#op, a, &autograd::op);          \
  }
DTENSOR_BLOCKWISE_UNARY(exp)
DTENSOR_BLOCKWISE_UNARY(log)
DTENSOR_BLOCKWISE_UNARY(sqrt)
DTENSOR_BLOCKWISE_UNARY(rsqrt)
DTENSOR_BLOCKWISE_UNARY(tanh)
DTENSOR_BLOCKWISE_UNARY(relu)
DTENSOR_BLOCKWISE_UNARY(silu)
DTENSOR_BLOCKWISE_UNARY(gelu)
#undef DTENSOR_BLOCKWISE_UNARY

DTensor cast(const DTensor& a, DType dtype) {
  if (!should_record(a)) return dtensor::cast(a, dtype);
  return same_layout("cast", {a}, {blockwise_layout(a.placements())},
                     [dtype](const std::vector<Tensor>& blocks) { return autograd::cast(blocks[0], dtype); });
}

DTensor softmax(const DTensor& a, int64_t dim) {
  if (!should_record(a)) return dtensor::softmax(a, dim);
  const int64_t d = normalize_dim(dim, a.dim(), "softmax");
  return same_layout("softmax", {a}, {blockwise_layout(a.placements(), d)},
                     [d](const std::vector<Tensor>& blocks) { return autograd::softmax(blocks[0], d); });
}

DTensor log_softmax(const DTensor& a, int64_t dim) {
  if (!should_record(a)) return dtensor::log_softmax(a, dim);
  const int64_t d = normalize_dim(dim, a.dim(), "log_softmax");
  return same_layout("log_softmax", {a}, {blockwise_layout(a.placements(), d)},
                     [d](const std::vector<Tensor>& blocks) { return autograd::log_softmax(blocks[0], d); });
}

DTensor layer_norm(const DTensor& x, const DTensor& weight, const DTensor& bias, double eps) {
  if (!should_record(x, weight, bias)) return dtensor::layer_norm(x, weight, bias, eps);
  const Placements replicated(x.placements().size(), Replicate());
  const Placements rows = blockwise_layout(x.placements(), x.dim() - 1);
  return same_layout("layer_norm", {x, weight, bias}, {rows, replicated, replicated},
                     [eps](const std::vector<Tensor>& b) { return autograd::layer_norm(b[0], b[1], b[2], eps); });
}

DTensor rms_norm(const DTensor& x, const DTensor& weight, double eps) {
  if (!should_record(x, weight)) return dtensor::rms_norm(x, weight, eps);
  const Placements replicated(x.placements().size(), Replicate());
  const Placements rows = blockwise_layout(x.placements(), x.dim() - 1);
  return same_layout("rms_norm", {x, weight}, {rows, replicated},
                     [eps](const std::vector<Tensor>& b) { return autograd::rms_norm(b[0], b[1], eps); });
}

DTensor maximum(const DTensor& a, const DTensor& b) {
  if (!should_record(a, b)) return dtensor::maximum(a, b);
  return elementwise("maximum", {a, b}, [](const std::vector<Tensor>& x) { return autograd::maximum(x[0], x[1]); });
}

DTensor minimum(const DTensor& a, const DTensor& b) {
  if (!should_record(a, b)) return dtensor::minimum(a, b);
  return elementwise("minimum", {a, b}, [](const std::vector<Tensor>& x) { return autograd::minimum(x[0], x[1]); });
}

DTensor where(const DTensor& cond, const DTensor& a, const DTensor& b) {
  if (!should_record(a, b)) return dtensor::where(cond, a, b);
  return elementwise("where", {cond, a, b},
                     [](const std::vector<Tensor>& x) { return autograd::where(x[0], x[1], x[2]); });
}

DTensor amax(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  if (!should_record(a)) return dtensor::amax(a, dims, keepdim);
  return reduction("amax", a, dims, keepdim,
                   [dims, keepdim](const std::vector<Tensor>& x) { return autograd::amax(x[0], dims, keepdim); });
}

DTensor amin(const DTensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  if (!should_record(a)) return dtensor::amin(a, dims, keepdim);
  return reduction("amin", a, dims, keepdim,
                   [dims, keepdim](const std::vector<Tensor>& x) { return autograd::amin(x[0], dims, keepdim); });
}

}  // namespace dtensor::autograd
