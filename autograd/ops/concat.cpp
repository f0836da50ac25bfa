// Joining and splitting with their backwards: cat's gradient is split back into the inputs'
// ranges; the pieces' gradients of chunk / split are written back into one gradient of the input.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "tensor/ops.hpp"

namespace dtensor::autograd {

namespace {
// The sizes along dim of the pieces, in order.
std::vector<int64_t> sizes_along(const std::vector<Tensor>& pieces, int64_t dim) {
  std::vector<int64_t> sizes;
  for (const Tensor& piece : pieces) sizes.push_back(piece.size(dim));
  return sizes;
}

// One node for all pieces of a split: their gradients go back into the input's ranges, zero
// where a piece received none.
std::vector<Tensor> record_split(const char* name, const Tensor& a, std::vector<Tensor> pieces, int64_t dim) {
  std::vector<Tensor*> outputs;
  for (Tensor& piece : pieces) outputs.push_back(&piece);
  record(name, {a}, {}, outputs,
         [shape = a.shape(), dtype = a.dtype(), device = a.device(), dim, sizes = sizes_along(pieces, dim)](
             const FunctionNode&, const Grads& piece_grads) {
           Tensor full = Tensor::zeros(shape, dtype, device);
           int64_t start = 0;
           for (size_t i = 0; i < sizes.size(); ++i) {
             if (piece_grads[i].defined()) full.narrow(dim, start, sizes[i]).copy_from(piece_grads[i]);
             start += sizes[i];
           }
           return Grads{full};
         });
  return pieces;
}
}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  Tensor out = dtensor::cat(tensors, dim);
  if (!should_record_any(tensors)) return out;
  int64_t d = normalize_dim(dim, out.dim(), "cat");
  return record("cat", tensors, {}, out, [d, sizes = sizes_along(tensors, d)](const FunctionNode&, const Tensor& grad) {
    Grads grads;
    int64_t start = 0;
    for (int64_t size : sizes) {
      grads.push_back(grad.narrow(d, start, size));
      start += size;
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  check<ValueError>(!tensors.empty(), "stack", "tensors is empty");
  int64_t d = normalize_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> unsqueezed;
  for (const Tensor& t : tensors) unsqueezed.push_back(autograd::unsqueeze(t, d));
  return autograd::cat(unsqueezed, d);
}

std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim) {
  std::vector<Tensor> pieces = dtensor::chunk(a, chunks, dim);
  if (!should_record(a)) return pieces;
  return record_split("chunk", a, std::move(pieces), normalize_dim(dim, a.dim(), "chunk"));
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  std::vector<Tensor> pieces = dtensor::split(a, sizes, dim);
  if (!should_record(a)) return pieces;
  return record_split("split", a, std::move(pieces), normalize_dim(dim, a.dim(), "split"));
}

}  // namespace dtensor::autograd
