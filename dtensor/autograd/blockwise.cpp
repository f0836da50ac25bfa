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
    Tensor block = autograd::detach(ready[i].to_local());
    if (requires_grad(inputs[i])) set_requires_grad(block);
    graph->leaves.push_back(block);
  }
  graph->output = local(graph->leaves);
  return graph;
}

// Runs `local` on the inputs' blocks laid out as `layouts` (the first input's layout is the
// output's) and records the node whose backward is the local graph's.
DTensor blockwise(const char* name, const std::vector<DTensor>& inputs, const std::vector<Placements>& layouts,
                  const LocalOp& local) {
  std::vector<DTensor> ready;
  std::vector<Edge> edges;
  std::vector<InputSpec> specs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DTensor& input = inputs[i];
    ready.push_back(input.placements() == layouts[i] ? input : input.redistribute(layouts[i]));
    edges.push_back(gradient_edge(input));
    specs.push_back(spec_of(input));
  }
  std::shared_ptr<LocalGraph> graph = run_local(inputs, ready, local);
  const DeviceMesh& mesh = inputs[0].mesh();
  const Placements& output_layout = layouts[0];
  DTensor out = DTensor::from_local(autograd::detach(graph->output), mesh, output_layout, inputs[0].shape());
  auto backward = [name, mesh, layouts, specs](const DistributedNode& node, const Gradients& grads) {
    LocalGraph& graph = node.held<LocalGraph>();
    DTensor grad = as_dtensor(grads[0], name).redistribute(mesh, layouts[0]);
    // retain_graph: the outer graph decides when the local one is freed (release_saved).
    autograd::backward(graph.output, grad.to_local(), /*retain_graph=*/true);
    Gradients input_grads(graph.leaves.size());
    for (size_t i = 0; i < graph.leaves.size(); ++i) {
      const Tensor& leaf = graph.leaves[i];
      if (!leaf.defined() || !requires_grad(leaf)) continue;
      // A copy: the leaf's buffer is reused (zeroed) by the next backward through this node.
      Tensor block = autograd::grad(leaf).clone();
      autograd::zero_grad(leaf);
      input_grads[i] =
          as_gradient(DTensor::from_local(block, mesh, gradient_layout(layouts[i], layouts[0]), specs[i].shape));
    }
    return input_grads;
  };
  auto node = std::make_shared<DistributedNode>(name, std::move(edges), std::move(specs), DGrads{}, 1, backward);
  node->hold(graph);
  attach(node, out, 0);
  return out;
}

// A unary op: blockwise on any layout without Partial.
DTensor unary(const char* name, const DTensor& a, Tensor (*local)(const Tensor&)) {
  return blockwise(name, {a}, {blockwise_layout(a.placements())},
                   [local](const std::vector<Tensor>& blocks) { return local(blocks[0]); });
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
  return blockwise("cast", {a}, {blockwise_layout(a.placements())},
                   [dtype](const std::vector<Tensor>& blocks) { return autograd::cast(blocks[0], dtype); });
}

DTensor softmax(const DTensor& a, int64_t dim) {
  if (!should_record(a)) return dtensor::softmax(a, dim);
  const int64_t d = normalize_dim(dim, a.dim(), "softmax");
  return blockwise("softmax", {a}, {blockwise_layout(a.placements(), d)},
                   [d](const std::vector<Tensor>& blocks) { return autograd::softmax(blocks[0], d); });
}

DTensor log_softmax(const DTensor& a, int64_t dim) {
  if (!should_record(a)) return dtensor::log_softmax(a, dim);
  const int64_t d = normalize_dim(dim, a.dim(), "log_softmax");
  return blockwise("log_softmax", {a}, {blockwise_layout(a.placements(), d)},
                   [d](const std::vector<Tensor>& blocks) { return autograd::log_softmax(blocks[0], d); });
}

DTensor layer_norm(const DTensor& x, const DTensor& weight, const DTensor& bias, double eps) {
  if (!should_record(x, weight, bias)) return dtensor::layer_norm(x, weight, bias, eps);
  const Placements replicated(x.placements().size(), Replicate());
  const Placements rows = blockwise_layout(x.placements(), x.dim() - 1);
  return blockwise("layer_norm", {x, weight, bias}, {rows, replicated, replicated},
                   [eps](const std::vector<Tensor>& b) { return autograd::layer_norm(b[0], b[1], b[2], eps); });
}

DTensor rms_norm(const DTensor& x, const DTensor& weight, double eps) {
  if (!should_record(x, weight)) return dtensor::rms_norm(x, weight, eps);
  const Placements replicated(x.placements().size(), Replicate());
  const Placements rows = blockwise_layout(x.placements(), x.dim() - 1);
  return blockwise("rms_norm", {x, weight}, {rows, replicated},
                   [eps](const std::vector<Tensor>& b) { return autograd::rms_norm(b[0], b[1], eps); });
}

}  // namespace dtensor::autograd
