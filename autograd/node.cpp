// Nodes of the autograd graph and how an op records one.
#include "autograd/node.hpp"

#include "tensor/ops.hpp"

#include <algorithm>

namespace dtensor::autograd {

Node::Node(std::vector<Edge> next_edges, size_t num_outputs)
    : next_edges_(std::move(next_edges)), num_outputs_(num_outputs) {}

Node::~Node() {
  std::vector<std::shared_ptr<Node>> orphans;
  hand_over_sole_owned(orphans);
  while (!orphans.empty()) {
    std::shared_ptr<Node> node = std::move(orphans.back());
    orphans.pop_back();
    node->hand_over_sole_owned(orphans);
  }  // each node is destroyed here with no edges left, so its destructor does not recurse
}

void Node::hand_over_sole_owned(std::vector<std::shared_ptr<Node>>& orphans) {
  for (Edge& edge : next_edges_) {
    if (edge.node && edge.node.use_count() == 1) orphans.push_back(std::move(edge.node));
  }
  next_edges_.clear();
}

namespace {
std::vector<Edge> edges_of(const std::vector<Tensor>& inputs) {
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& input : inputs) edges.push_back(gradient_edge(input));
  return edges;
}

// A saved tensor keeps the values but not the autograd state: a node saving its own output must
// not own itself through the output's grad_fn.
std::vector<Tensor> detached(std::vector<Tensor> tensors) {
  for (Tensor& t : tensors) t.set_autograd_meta(nullptr);
  return tensors;
}

bool all_undefined(const Gradients& grads) {
  return std::none_of(grads.begin(), grads.end(), [](const Gradient& g) { return g.defined(); });
}
}  // namespace

// FunctionNode -----------------------------------------------------------------------------------

FunctionNode::FunctionNode(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> saved,
                           size_t num_outputs, Backward backward)
    : OpNode(name, edges_of(inputs), num_outputs), saved_(detached(std::move(saved))), backward_(std::move(backward)) {
  for (const Tensor& input : inputs) {
    input_shapes_.push_back(input.shape());
    input_dtypes_.push_back(input.dtype());
  }
}

Gradients OpNode::apply(const Gradients& output_grads) {
  Gradients grads(next_edges().size());
  if (all_undefined(output_grads)) return grads;
  check<AutogradError>(!saved_released_, "backward",
                       "{}'s saved tensors were freed by an earlier backward through this graph; pass "
                       "retain_graph = true to that backward to run backward through it again",
                       name_);
  Gradients computed = compute(output_grads);
  check<AutogradError>(computed.size() == grads.size(), "backward", "{}'s backward returned {} gradients for {} inputs",
                       name_, computed.size(), grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!needs_grad(i) || !computed[i].defined()) continue;
    check_gradient(computed[i], i);
    grads[i] = std::move(computed[i]);
  }
  return grads;
}

Gradients FunctionNode::compute(const Gradients& output_grads) {
  Grads local_grads;
  for (const Gradient& g : output_grads) local_grads.push_back(g.tensor(name()));
  Grads computed = backward_(*this, local_grads);
  return Gradients(computed.begin(), computed.end());
}

void FunctionNode::check_gradient(const Gradient& g, size_t input) const {
  const Tensor& gradient = g.tensor(name());
  check<AutogradError>(gradient.shape() == input_shapes_[input] && gradient.dtype() == input_dtypes_[input], "backward",
                       "{}'s gradient for input {} is {} {}, expected {} {}", name(), input,
                       dtype_name(gradient.dtype()), shape_str(gradient.shape()), dtype_name(input_dtypes_[input]),
                       shape_str(input_shapes_[input]));
}

void FunctionNode::release_saved() {
  if (saved_.empty()) return;  // nothing was saved, so a second backward needs nothing freed
  saved_.clear();
  saved_.shrink_to_fit();
  mark_released();
}

// AccumulateGrad ---------------------------------------------------------------------------------

AccumulateGrad::AccumulateGrad(std::shared_ptr<AutogradMeta> leaf, Shape shape, DType dtype)
    : Node({}, 1), leaf_(std::move(leaf)), shape_(std::move(shape)), dtype_(dtype) {}

Gradients AccumulateGrad::apply(const Gradients& output_grads) {
  const Tensor& gradient = output_grads[0].tensor("AccumulateGrad");
  if (!gradient.defined()) return {};
  check<AutogradError>(gradient.shape() == shape_ && gradient.dtype() == dtype_, "backward",
                       "the gradient reaching a leaf {} {} is {} {}", dtype_name(dtype_), shape_str(shape_),
                       dtype_name(gradient.dtype()), shape_str(gradient.shape()));
  // The first gradient is copied, as it may be a view of another tensor (a broadcast, the caller's
  // seed); later ones are added into that buffer, which thus stays the same until the leaf goes.
  if (leaf_->grad.defined()) {
    leaf_->grad.copy_from(dtensor::add(leaf_->grad, gradient));
  } else {
    leaf_->grad = gradient.clone();
  }
  return {};
}

// Recording --------------------------------------------------------------------------------------

bool should_record_any(const std::vector<Tensor>& inputs) {
  return std::any_of(inputs.begin(), inputs.end(), [](const Tensor& t) { return should_record(t); });
}

Edge gradient_edge(const std::shared_ptr<AutogradMeta>& meta,
                   const std::function<std::shared_ptr<Node>()>& make_accumulator) {
  if (!meta || !meta->requires_grad) return {};
  if (meta->grad_fn) return {meta->grad_fn, meta->output_nr};
  std::shared_ptr<Node> accumulator = meta->grad_accumulator.lock();
  if (!accumulator) {
    accumulator = make_accumulator();
    meta->grad_accumulator = accumulator;
  }
  return {accumulator, 0};
}

Edge gradient_edge(const Tensor& tensor) {
  const auto& meta = tensor.autograd_meta();
  return gradient_edge(meta, [&] { return std::make_shared<AccumulateGrad>(meta, tensor.shape(), tensor.dtype()); });
}

// Gradient ---------------------------------------------------------------------------------------

const Tensor& Gradient::tensor(const char* op) const {
  check<AutogradError>(!value_, "backward", "{} received a DTensor (or other non-local) gradient for a local tensor",
                       op);
  return tensor_;
}

Gradient Gradient::plus(const Gradient& other) const {
  if (!defined()) return other;
  if (!other.defined()) return *this;
  check<AutogradError>(bool(value_) == bool(other.value_), "backward",
                       "a local and a DTensor gradient reached the same tensor");
  if (value_) return Gradient(value_->plus(*other.value_));
  return Gradient(dtensor::add(tensor_, other.tensor_));
}

void record(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> saved,
            const std::vector<Tensor*>& outputs, FunctionNode::Backward backward) {
  auto node = std::make_shared<FunctionNode>(name, inputs, std::move(saved), outputs.size(), std::move(backward));
  for (size_t i = 0; i < outputs.size(); ++i) {
    auto meta = std::make_shared<AutogradMeta>();
    meta->requires_grad = true;
    meta->grad_fn = node;
    meta->output_nr = uint32_t(i);
    outputs[i]->set_autograd_meta(std::move(meta));
  }
}

Tensor record(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> saved, Tensor output,
              SingleOutputBackward backward) {
  auto one_output = [backward = std::move(backward)](const FunctionNode& node, const Grads& output_grads) {
    return backward(node, output_grads[0]);
  };
  record(name, inputs, std::move(saved), {&output}, std::move(one_output));
  return output;
}

}  // namespace dtensor::autograd
