// The backward pass: runs each node of the graph below the root once, after every node that
// sends it a gradient, summing the gradients that reach the same output.
#include "autograd/autograd.hpp"
#include "autograd/node.hpp"
#include "tensor/ops.hpp"

#include <unordered_map>
#include <vector>

namespace dtensor::autograd {
namespace {

// How many edges of the graph below root point at each node: a node may run once all of them
// have delivered their gradient.
std::unordered_map<Node*, int> count_dependencies(Node* root) {
  std::unordered_map<Node*, int> dependencies{{root, 0}};
  std::vector<Node*> to_visit{root};
  while (!to_visit.empty()) {
    Node* node = to_visit.back();
    to_visit.pop_back();
    for (const Edge& edge : node->next_edges()) {
      if (!edge.node) continue;
      auto [it, first_visit] = dependencies.try_emplace(edge.node.get(), 0);
      ++it->second;
      if (first_visit) to_visit.push_back(edge.node.get());
    }
  }
  return dependencies;
}

Tensor seed_gradient(const Tensor& root, const Tensor& gradient) {
  check_seed(root.shape(), root.dtype(), gradient.defined(), gradient.shape(), gradient.dtype());
  if (!gradient.defined()) return Tensor::full(root.shape(), 1.0, root.dtype(), root.device());
  return detach(gradient);
}

}  // namespace

void check_seed(const Shape& root_shape, DType root_dtype, bool given, const Shape& shape, DType dtype) {
  if (!given) {
    check<ShapeError>(shape_numel(root_shape) == 1, "backward",
                      "a gradient can be left out only for a one-element root, root is {}; pass gradient",
                      shape_str(root_shape));
    return;
  }
  check<ShapeError>(shape == root_shape, "backward", "gradient has shape {}, root has {}", shape_str(shape),
                    shape_str(root_shape));
  check<DTypeError>(dtype == root_dtype, "backward", "gradient is {}, root is {}", dtype, root_dtype);
}

void run_backward(const Edge& root, Gradient root_gradient, bool retain_graph) {
  NoGradGuard no_grad;  // the backward formulas call plain kernels; this keeps any other op from recording
  std::unordered_map<Node*, int> dependencies = count_dependencies(root.node.get());
  std::unordered_map<Node*, Gradients> arrived;  // gradients of each pending node's outputs
  arrived[root.node.get()].resize(root.node->num_outputs());
  arrived[root.node.get()][root.input_nr] = std::move(root_gradient);
  std::vector<std::shared_ptr<Node>> ready{root.node};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Gradients output_grads = std::move(arrived[node.get()]);
    arrived.erase(node.get());
    Gradients input_grads = node->apply(output_grads);
    output_grads.clear();
    if (!retain_graph) node->release_saved();
    const std::vector<Edge>& edges = node->next_edges();
    for (size_t i = 0; i < edges.size(); ++i) {
      Node* next = edges[i].node.get();
      if (!next) continue;
      Gradients& slots = arrived[next];
      if (slots.empty()) slots.resize(next->num_outputs());
      if (i < input_grads.size()) slots[edges[i].input_nr] = slots[edges[i].input_nr].plus(input_grads[i]);
      if (--dependencies[next] == 0) ready.push_back(edges[i].node);
    }
  }
}

void backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  check<ValueError>(root.defined(), "backward", "root is undefined");
  Edge root_edge = gradient_edge(root);
  check<ValueError>(bool(root_edge.node), "backward",
                    "root {} does not require a gradient: no input of the ops that made it requires one, or "
                    "they ran under NoGradGuard",
                    root.to_string());
  run_backward(root_edge, seed_gradient(root, gradient), retain_graph);
}

}  // namespace dtensor::autograd
