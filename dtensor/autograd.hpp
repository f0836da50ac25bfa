// Reverse-mode autograd of DTensors (docs/design.md section 13): the engine of autograd/autograd.hpp
// with gradients that are DTensors and carry placements.
//
//   namespace ag = dtensor::autograd;
//   DTensor w = DTensor::distribute(full_w, mesh, {Shard(0)});
//   ag::set_requires_grad(w);
//   DTensor loss = ag::sum(ag::linear(x, w));   // the DTensor ops below record a graph
//   ag::backward(loss);                         // ag::grad(w) is a DTensor placed S(0), like w
//
// A DTensor op's backward is written with DTensor ops, so their sharding rules give the gradient
// placements: an intermediate gradient may stay Partial(sum) (two of them add without a
// reduction); a leaf's gradient is redistributed to the leaf's placements once, when it arrives.
// The backward of redistribute(src -> dst) redistributes the gradient back to src, a Partial in
// src read as Replicate (PyTorch's rule). Local tensors and DTensors mix in one graph through
// from_local / to_local / full_tensor.
#pragma once

#include "autograd/autograd.hpp"
#include "dtensor/dtensor.hpp"

#include <optional>
#include <vector>

namespace dtensor::autograd {

// The leaf state of autograd/autograd.hpp, for DTensors. set_requires_grad: ValueError for a
// non-leaf, DTypeError for a non-floating dtype.
void set_requires_grad(DTensor& tensor, bool wanted = true);
bool requires_grad(const DTensor& tensor);
bool is_leaf(const DTensor& tensor);
std::shared_ptr<Node> grad_fn(const DTensor& tensor);
// The accumulated gradient of a leaf, with the leaf's mesh, placements, shape and dtype
// (undefined before the first backward that reaches it).
DTensor grad(const DTensor& tensor);
// Fills the leaf's accumulated gradient with zeros in place, keeping its buffer.
void zero_grad(const DTensor& tensor);
DTensor detach(const DTensor& tensor);

// backward from a DTensor root. `gradient` (same global shape and dtype, any placements) may be
// omitted for a one-element root, where it is a replicated 1. Collective over the root's mesh:
// every rank must call it on the same graph.
void backward(const DTensor& root, const DTensor& gradient = DTensor(), bool retain_graph = false);

// Between layouts and between DTensors and local tensors. redistribute's backward redistributes
// the gradient to the source placements with Partial read as Replicate; from_local's does the same
// and returns the local block; to_local's wraps the local gradient with the input's placements
// (as torch's DTensor.to_local without grad_placements).
DTensor redistribute(const DTensor& a, const Placements& placements);
DTensor from_local(const Tensor& local, const DeviceMesh& mesh, const Placements& placements,
                   const std::optional<Shape>& global_shape = std::nullopt);
Tensor to_local(const DTensor& a);
// The same, with the local gradient wrapped as `grad_placements` instead (torch's
// to_local(grad_placements=...)): Partial() where the ranks use their copies of a replicated block
// differently (each its own slice or heads), so that each rank's gradient is one summand.
Tensor to_local(const DTensor& a, const Placements& grad_placements);
Tensor full_tensor(const DTensor& a);

// The differentiable forms of the ops of dtensor/ops.hpp of the same names and arguments.
// Broadcast inputs get their gradient summed back over the broadcast dims.
DTensor add(const DTensor& a, const DTensor& b);
DTensor sub(const DTensor& a, const DTensor& b);
DTensor mul(const DTensor& a, const DTensor& b);
DTensor div(const DTensor& a, const DTensor& b);
DTensor add(const DTensor& a, double s);
DTensor mul(const DTensor& a, double s);
DTensor neg(const DTensor& a);
DTensor sum(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
DTensor mean(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
DTensor reshape(const DTensor& a, const Shape& shape);
DTensor transpose(const DTensor& a, int64_t dim0, int64_t dim1);
DTensor view(const DTensor& a, const Shape& shape);
DTensor flatten(const DTensor& a, int64_t start_dim = 0, int64_t end_dim = -1);
DTensor permute(const DTensor& a, const std::vector<int64_t>& dims);
// The gradient is zero outside the narrowed range.
DTensor narrow(const DTensor& a, int64_t dim, int64_t start, int64_t length);
// Joins and splits; the pieces of chunk / split share one node and a piece without a gradient
// counts as zeros.
DTensor cat(const std::vector<DTensor>& tensors, int64_t dim);
DTensor stack(const std::vector<DTensor>& tensors, int64_t dim);
std::vector<DTensor> chunk(const DTensor& a, int64_t chunks, int64_t dim);
std::vector<DTensor> split(const DTensor& a, const std::vector<int64_t>& sizes, int64_t dim);
// Blockwise ops (dtensor/autograd/blockwise.cpp): a Partial input is reduced and the dim they
// work along gathered first, then the local autograd op runs on the blocks and its backward is
// the local one. A norm's weight (replicated beside sharded rows) gets a P(sum) gradient.
DTensor exp(const DTensor& a);
DTensor log(const DTensor& a);
DTensor sqrt(const DTensor& a);
DTensor rsqrt(const DTensor& a);
DTensor tanh(const DTensor& a);
DTensor relu(const DTensor& a);
DTensor silu(const DTensor& a);
DTensor gelu(const DTensor& a);
DTensor cast(const DTensor& a, DType dtype);
DTensor softmax(const DTensor& a, int64_t dim);
DTensor log_softmax(const DTensor& a, int64_t dim);
DTensor layer_norm(const DTensor& x, const DTensor& weight, const DTensor& bias, double eps);
DTensor rms_norm(const DTensor& x, const DTensor& weight, double eps);
// Broadcasting elementwise ops run blockwise too: the output is laid out as the input of the
// output's shape (else replicated), the other inputs aligned to it. Ties split the gradient, as
// torch; cond gets none.
DTensor maximum(const DTensor& a, const DTensor& b);
DTensor minimum(const DTensor& a, const DTensor& b);
DTensor where(const DTensor& cond, const DTensor& a, const DTensor& b);
// amax / amin gather the reduced dims, then reduce blockwise.
DTensor amax(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
DTensor amin(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// embedding (dtensor/autograd/embedding.cpp): the weight's gradient has the weight's placements and
// is made without gathering the weight: vocab-parallel S(0) and S(1) scatter-add locally into the
// rank's block; a replicated weight beside split ids gets a P(sum) gradient, reduced once at the
// leaf. Where the weight is split the lookup runs with the ids replicated. ids get no gradient.
DTensor embedding(const DTensor& weight, const DTensor& ids);

// Cross-entropy (dtensor/autograd/cross_entropy.cpp): autograd::cross_entropy of autograd/ops.hpp
// over DTensor logits [..., vocab] and the WHOLE labels (a plain tensor, the same on every rank),
// returning a replicated 0-d DTensor. A Partial logits is reduced first; a sharded vocab dim is
// never gathered: three all-reduces over the mesh dims that shard it (row max, sum of exp, label
// logit), one more over the mesh dims that shard rows (the summed loss), none in backward, whose
// gradient has the logits' placements (Partial read as Replicate). Label errors are raised on
// every rank alike.
DTensor cross_entropy(const DTensor& logits, const Tensor& labels, int64_t ignore_index = -100);

// Both operands at least 2-D (ValueError naming the operand otherwise).
DTensor matmul(const DTensor& a, const DTensor& b);
DTensor linear(const DTensor& x, const DTensor& weight);
DTensor linear(const DTensor& x, const DTensor& weight, const DTensor& bias);
DTensor bmm(const DTensor& a, const DTensor& b);

}  // namespace dtensor::autograd
