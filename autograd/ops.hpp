// Differentiable forms of the kernels of tensor/ops.hpp and of Tensor's views. Each runs the
// kernel it names, with the same arguments, results and errors, and records a node when one of
// its inputs requires a gradient (autograd/autograd.hpp); otherwise it costs one test per input.
// Backward formulas sit beside their forwards in autograd/ops/<family>.cpp and run in the op's
// dtype, except that 16-bit floats compute composite formulas and reductions in f32 and round
// once, as the forward kernels do. Integer inputs (ids, masks, conditions) get no gradient.
#pragma once

#include "tensor/attention.hpp"
#include "tensor/tensor.hpp"

#include <utility>
#include <vector>

namespace dtensor::autograd {

// Elementwise (ops/elementwise.cpp). Gradients of broadcast inputs are summed over the
// broadcast dims. maximum / minimum split the gradient equally between tied inputs, as torch.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);
// Copies: the gradient comes back in a's dtype / on a's device.
Tensor cast(const Tensor& a, DType dtype);         // Tensor::to(dtype)
Tensor to_device(const Tensor& a, Device device);  // Tensor::to(device)
Tensor clone(const Tensor& a);

// Unary math (ops/unary.cpp). relu's and abs's gradient at 0 is 0, as torch.
Tensor neg(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor silu(const Tensor& a);
Tensor gelu(const Tensor& a);

// Reductions (ops/reduce.cpp). amax / amin split the gradient equally between tied maxima, as torch.
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);

// Products (ops/matmul.cpp).
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Views (ops/views.cpp): Tensor's methods of the same names; the gradient of a view is the
// gradient placed back where the view reads.
Tensor reshape(const Tensor& a, const Shape& shape);
Tensor view(const Tensor& a, const Shape& shape);
Tensor flatten(const Tensor& a, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor unsqueeze(const Tensor& a, int64_t dim);
Tensor squeeze(const Tensor& a, int64_t dim);
Tensor expand(const Tensor& a, const Shape& shape);
Tensor transpose(const Tensor& a, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& a, const std::vector<int64_t>& dims);
Tensor narrow(const Tensor& a, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& a, int64_t dim, int64_t index);
Tensor contiguous(const Tensor& a);

// Normalisations (ops/normalize.cpp). The statistics are recomputed from the saved input in
// the backward (f32 for 16-bit inputs) rather than kept from the forward.
Tensor softmax(const Tensor& a, int64_t dim);
Tensor log_softmax(const Tensor& a, int64_t dim);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);

// Gathers (ops/gather.cpp). Their backwards scatter-add on the host (a tensor on a device is
// copied there and back): a row or element read several times receives the sum of the gradients.
// topk's indices carry no gradient.
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);
std::pair<Tensor, Tensor> topk(const Tensor& values, int64_t k, int64_t dim = -1);

// Loss (ops/loss.cpp): torch's F.cross_entropy with reduction "mean". logits [..., vocab] (floating),
// labels i32 / i64 of the logits' shape less the last dim. Returns the 0-d mean of
// lse(row) - row[label] over the counted tokens (label != ignore_index) in the logits' dtype,
// computed in f32 for bf16 / f16; NaN when every token is ignored. A label outside [0, vocab)
// other than ignore_index is a ValueError naming labels, its flat position and its value.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);

// Joining and splitting (ops/concat.cpp). stack is cat of unsqueezed inputs (torch.stack);
// the pieces of chunk / split share one node, and pieces without a gradient count as zeros.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim);

// Decoder attention (ops/attention.cpp). The rotary tables are constants and get no gradient;
// attention's backward recomputes the probabilities from q and k, and each KV head's gradient
// sums over the query heads that read it.
Tensor apply_rotary(const Tensor& x, const RotaryTables& tables);
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of = {});

}  // namespace dtensor::autograd
