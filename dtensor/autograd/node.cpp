// DTensor gradients, nodes and leaves, and the DTensor forms of the leaf API and of backward.
#include "dtensor/autograd/node.hpp"

#include "dtensor/ops.hpp"
#include "tensor/ops.hpp"

#include <algorithm>

namespace dtensor::autograd {

// Gradients --------------------------------------------------------------------------------------

std::shared_ptr<const GradientValue> DTensorGradient::plus(const GradientValue& other) const {
  const auto* other_dtensor = dynamic_cast<const DTensorGradient*>(&other);
  check<AutogradError>(other_dtensor != nullptr, "backward",
                       "a DTensor and another kind of gradient reached one tensor");
  return std::make_shared<DTensorGradient>(dtensor::add(value_, other_dtensor->value_));
}

Gradient as_gradient(const DTensor& gradient) {
  if (!gradient.local_tensor().defined()) return {};
  return Gradient(std::make_shared<DTensorGradient>(gradient));
}

DTensor as_dtensor(const Gradient& gradient, const char* op) {
  if (!gradient.defined()) return {};
  const auto* value = dynamic_cast<const DTensorGradient*>(gradient.value());
  check<AutogradError>(value != nullptr, "backward", "{} received a local gradient for a DTensor", op);
  return value->value();
}

// DistributedNode --------------------------------------------------------------------------------

namespace {
DGrads detached(DGrads tensors) {
  for (DTensor& t : tensors) t.set_autograd_meta(nullptr);
  return tensors;
}
}  // namespace

DistributedNode::DistributedNode(const char* name, std::vector<Edge> edges, std::vector<InputSpec> inputs, DGrads saved,
                                 size_t num_outputs, Backward backward)
    : OpNode(name, std::move(edges), num_outputs),
      inputs_(std::move(inputs)),
      saved_(detached(std::move(saved))),
      backward_(std::move(backward)) {}

void DistributedNode::check_gradient(const Gradient& gradient, size_t input) const {
  const InputSpec& spec = inputs_[input];
  Shape shape;
  DType dtype;
  if (spec.distributed) {
    DTensor g = as_dtensor(gradient, name());
    shape = g.shape();
    dtype = g.dtype();
  } else {
    const Tensor& g = gradient.tensor(name());
    shape = g.shape();
    dtype = g.dtype();
  }
  check<AutogradError>(shape == spec.shape && dtype == spec.dtype, "backward",
                       "{}'s gradient for input {} is {} {}, expected {} {}", name(), input, dtype_name(dtype),
                       shape_str(shape), dtype_name(spec.dtype), shape_str(spec.shape));
}

void DistributedNode::release_saved() {
  if (saved_.empty() && !held_) return;  // nothing was saved, so a second backward needs nothing freed
  held_.reset();
  saved_.clear();
  saved_.shrink_to_fit();
  mark_released();
}

// AccumulateDTensorGrad --------------------------------------------------------------------------

AccumulateDTensorGrad::AccumulateDTensorGrad(std::shared_ptr<DTensorAutogradMeta> leaf, const DTensor& like)
    : Node({}, 1),
      leaf_(std::move(leaf)),
      mesh_(like.mesh()),
      placements_(like.placements()),
      shape_(like.shape()),
      dtype_(like.dtype()) {}

Gradients AccumulateDTensorGrad::apply(const Gradients& output_grads) {
  DTensor gradient = as_dtensor(output_grads[0], name());
  if (!gradient.local_tensor().defined()) return {};
  check<AutogradError>(gradient.shape() == shape_ && gradient.dtype() == dtype_, "backward",
                       "the gradient reaching a leaf {} {} is {} {}", dtype_name(dtype_), shape_str(shape_),
                       dtype_name(gradient.dtype()), shape_str(gradient.shape()));
  // The one place a leaf's gradient is reduced or moved: e.g. P(sum) -> R is one all-reduce.
  if (gradient.placements() != placements_) gradient = gradient.redistribute(mesh_, placements_);
  DTensor& sum = leaf_->dtensor_grad;
  if (sum.local_tensor().defined()) {
    // Same placements on both sides, so the local blocks add: the buffer stays put, as for tensors.
    sum.local_tensor().copy_from(dtensor::add(sum.local_tensor(), gradient.local_tensor()));
  } else {
    sum = DTensor::from_local(gradient.local_tensor().clone(), mesh_, placements_, shape_);
  }
  return {};
}

// Recording --------------------------------------------------------------------------------------

namespace {
bool wants(const DTensor& t) { return t.autograd_meta() && t.autograd_meta()->requires_grad; }
}  // namespace

bool should_record(const DTensor& a) { return wants(a) && grad_mode_enabled(); }
bool should_record(const DTensor& a, const DTensor& b) { return (wants(a) || wants(b)) && grad_mode_enabled(); }
bool should_record(const DTensor& a, const DTensor& b, const DTensor& c) {
  return (wants(a) || wants(b) || wants(c)) && grad_mode_enabled();
}

Edge gradient_edge(const DTensor& tensor) {
  const std::shared_ptr<DTensorAutogradMeta>& meta = tensor.autograd_meta();
  return gradient_edge(meta, [&] { return std::make_shared<AccumulateDTensorGrad>(meta, tensor); });
}

InputSpec spec_of(const DTensor& tensor) { return {tensor.shape(), tensor.dtype(), true}; }
InputSpec spec_of(const Tensor& tensor) { return {tensor.shape(), tensor.dtype(), false}; }

void attach(const std::shared_ptr<Node>& node, DTensor& output, uint32_t output_nr) {
  auto meta = std::make_shared<DTensorAutogradMeta>();
  meta->requires_grad = true;
  meta->grad_fn = node;
  meta->output_nr = output_nr;
  output.set_autograd_meta(std::move(meta));
}

void attach(const std::shared_ptr<Node>& node, Tensor& output, uint32_t output_nr) {
  auto meta = std::make_shared<AutogradMeta>();
  meta->requires_grad = true;
  meta->grad_fn = node;
  meta->output_nr = output_nr;
  output.set_autograd_meta(std::move(meta));
}

DTensor record(const char* name, const std::vector<DTensor>& inputs, DGrads saved, DTensor output, DBackward backward) {
  std::vector<Edge> edges;
  std::vector<InputSpec> specs;
  for (const DTensor& input : inputs) {
    edges.push_back(gradient_edge(input));
    specs.push_back(spec_of(input));
  }
  auto one_output = [name, backward = std::move(backward)](const DistributedNode& node, const Gradients& grads) {
    DGrads computed = backward(node, as_dtensor(grads[0], name));
    Gradients out;
    for (const DTensor& g : computed) out.push_back(as_gradient(g));
    return out;
  };
  auto node = std::make_shared<DistributedNode>(name, std::move(edges), std::move(specs), std::move(saved), 1,
                                                std::move(one_output));
  attach(node, output, 0);
  return output;
}

// The leaf API -----------------------------------------------------------------------------------

void set_requires_grad(DTensor& tensor, bool wanted) {
  mark_requires_grad<DTensorAutogradMeta>(tensor, tensor.local_tensor().defined(), tensor.dtype(), wanted);
}

bool requires_grad(const DTensor& tensor) { return wants(tensor); }

bool is_leaf(const DTensor& tensor) { return !tensor.autograd_meta() || !tensor.autograd_meta()->grad_fn; }

std::shared_ptr<Node> grad_fn(const DTensor& tensor) {
  return tensor.autograd_meta() ? tensor.autograd_meta()->grad_fn : nullptr;
}

DTensor grad(const DTensor& tensor) {
  return tensor.autograd_meta() ? tensor.autograd_meta()->dtensor_grad : DTensor();
}

void zero_grad(const DTensor& tensor) {
  if (tensor.autograd_meta() && tensor.autograd_meta()->dtensor_grad.local_tensor().defined()) {
    tensor.autograd_meta()->dtensor_grad.local_tensor().fill(0.0);
  }
}

DTensor detach(const DTensor& tensor) {
  DTensor detached = tensor;
  detached.set_autograd_meta(nullptr);
  return detached;
}

// backward ---------------------------------------------------------------------------------------

namespace {
DTensor seed_gradient(const DTensor& root, const DTensor& gradient) {
  const bool given = gradient.local_tensor().defined();
  check_seed(root.shape(), root.dtype(), given, gradient.shape(), gradient.dtype());
  if (!given) {
    Placements replicated(root.placements().size(), Replicate());
    Tensor one = Tensor::full(root.shape(), 1.0, root.dtype(), root.local_tensor().device());
    return DTensor::from_local(one, root.mesh(), replicated, root.shape());
  }
  return detach(gradient);
}
}  // namespace

void backward(const DTensor& root, const DTensor& gradient, bool retain_graph) {
  check<ValueError>(root.local_tensor().defined(), "backward", "root is undefined");
  Edge root_edge = gradient_edge(root);
  check<ValueError>(bool(root_edge.node), "backward",
                    "root does not require a gradient: no input of the ops that made it requires one, or they ran "
                    "under NoGradGuard");
  run_backward(root_edge, as_gradient(seed_gradient(root, gradient)), retain_graph);
}

}  // namespace dtensor::autograd
