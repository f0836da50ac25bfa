// Differentiable DTensor views, joins and splits, bmm and div: backwards written with DTensor ops,
// so a gradient keeps whatever sharding the ops' rules give it.
#include "dtensor/autograd/node.hpp"
#include "dtensor/ops.hpp"

#include <numeric>

namespace dtensor::autograd {

namespace {

// Zeros of `shape`, replicated over the mesh: the part of a gradient no output read.
DTensor replicated_zeros(const DeviceMesh& mesh, size_t mesh_ndim, const Shape& shape, DType dtype, Device device) {
  Tensor zeros = Tensor::full(shape, 0.0, dtype, device);
  return DTensor::from_local(zeros, mesh, Placements(mesh_ndim, Replicate()), shape);
}

// What a join's or split's backward needs to know of a tensor.
struct Piece {
  Shape shape;
  DType dtype;
  Device device;
};

// The gradient of `whole` from its pieces' gradients along `dim`: the undefined ones read as zeros.
DTensor join_gradients(const DTensor& like, const std::vector<Piece>& pieces, const Gradients& grads, int64_t dim,
                       const char* op) {
  std::vector<DTensor> parts;
  for (size_t i = 0; i < pieces.size(); ++i) {
    DTensor g = as_dtensor(grads[i], op);
    if (!g.local_tensor().defined()) {
      g = replicated_zeros(like.mesh(), like.placements().size(), pieces[i].shape, pieces[i].dtype, pieces[i].device);
    }
    parts.push_back(g);
  }
  return dtensor::cat(parts, dim);
}

// The node of chunk / split: one output per piece, the gradient the pieces' gradients joined.
std::vector<DTensor> record_split(const char* name, const DTensor& a, std::vector<DTensor> pieces, int64_t dim) {
  std::vector<Piece> shapes;
  for (const DTensor& piece : pieces) shapes.push_back({piece.shape(), piece.dtype(), piece.local_tensor().device()});
  // A detached handle for the mesh and layout only (no autograd state, so no cycle through it).
  auto backward = [name, like = detach(a), shapes, dim](const DistributedNode&, const Gradients& grads) {
    return Gradients{as_gradient(join_gradients(like, shapes, grads, dim, name))};
  };
  auto node = std::make_shared<DistributedNode>(name, std::vector<Edge>{gradient_edge(a)},
                                                std::vector<InputSpec>{spec_of(a)}, DGrads{}, pieces.size(), backward);
  for (size_t i = 0; i < pieces.size(); ++i) attach(node, pieces[i], uint32_t(i));
  return pieces;
}

std::vector<int64_t> inverse(const std::vector<int64_t>& dims, int64_t ndim) {
  std::vector<int64_t> back(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) back[size_t(normalize_dim(dims[i], ndim, "permute"))] = int64_t(i);
  return back;
}

}  // namespace

// Views ------------------------------------------------------------------------------------------

DTensor view(const DTensor& a, const Shape& shape) {
  DTensor out = dtensor::view(a, shape);
  if (!should_record(a)) return out;
  return record("view", {a}, {}, out, [input = a.shape()](const DistributedNode&, const DTensor& grad) {
    return DGrads{dtensor::reshape(grad, input)};
  });
}

DTensor flatten(const DTensor& a, int64_t start_dim, int64_t end_dim) {
  DTensor out = dtensor::flatten(a, start_dim, end_dim);
  if (!should_record(a)) return out;
  return record("flatten", {a}, {}, out, [input = a.shape()](const DistributedNode&, const DTensor& grad) {
    return DGrads{dtensor::reshape(grad, input)};
  });
}

DTensor permute(const DTensor& a, const std::vector<int64_t>& dims) {
  DTensor out = dtensor::permute(a, dims);
  if (!should_record(a)) return out;
  return record("permute", {a}, {}, out, [back = inverse(dims, a.dim())](const DistributedNode&, const DTensor& grad) {
    return DGrads{dtensor::permute(grad, back)};
  });
}

// The gradient of a narrow is the output's gradient with zeros before and after it along `dim`.
DTensor narrow(const DTensor& a, int64_t dim, int64_t start, int64_t length) {
  DTensor out = dtensor::narrow(a, dim, start, length);
  if (!should_record(a)) return out;
  const int64_t d = normalize_dim(dim, a.dim(), "narrow");
  Piece before{a.shape(), a.dtype(), a.local_tensor().device()}, after = before;
  before.shape[size_t(d)] = start;
  after.shape[size_t(d)] = a.shape()[size_t(d)] - start - length;
  return record("narrow", {a}, {}, out,
                [like = detach(a), before, after, d](const DistributedNode&, const DTensor& grad) {
                  std::vector<DTensor> parts;
                  auto zeros = [&](const Piece& p) {
                    return replicated_zeros(like.mesh(), like.placements().size(), p.shape, p.dtype, p.device);
                  };
                  if (before.shape[size_t(d)] > 0) parts.push_back(zeros(before));
                  parts.push_back(grad);
                  if (after.shape[size_t(d)] > 0) parts.push_back(zeros(after));
                  return DGrads{parts.size() == 1 ? grad : dtensor::cat(parts, d)};
                });
}

// Joins and splits -------------------------------------------------------------------------------

DTensor cat(const std::vector<DTensor>& tensors, int64_t dim) {
  DTensor out = dtensor::cat(tensors, dim);
  if (std::none_of(tensors.begin(), tensors.end(), [](const DTensor& t) { return should_record(t); })) return out;
  const int64_t d = normalize_dim(dim, out.dim(), "cat");
  std::vector<int64_t> sizes;
  for (const DTensor& t : tensors) sizes.push_back(t.shape()[size_t(d)]);
  return record("cat", tensors, {}, out, [sizes, d](const DistributedNode&, const DTensor& grad) {
    DGrads grads;
    int64_t offset = 0;
    for (int64_t size : sizes) {
      grads.push_back(dtensor::narrow(grad, d, offset, size));
      offset += size;
    }
    return grads;
  });
}

DTensor stack(const std::vector<DTensor>& tensors, int64_t dim) {
  DTensor out = dtensor::stack(tensors, dim);
  if (std::none_of(tensors.begin(), tensors.end(), [](const DTensor& t) { return should_record(t); })) return out;
  const int64_t d = normalize_dim(dim, out.dim(), "stack");
  const Shape input = tensors[0].shape();
  return record("stack", tensors, {}, out,
                [count = tensors.size(), input, d](const DistributedNode&, const DTensor& grad) {
                  DGrads grads;
                  for (size_t i = 0; i < count; ++i)
                    grads.push_back(dtensor::reshape(dtensor::narrow(grad, d, int64_t(i), 1), input));
                  return grads;
                });
}

std::vector<DTensor> chunk(const DTensor& a, int64_t chunks, int64_t dim) {
  std::vector<DTensor> pieces = dtensor::chunk(a, chunks, dim);
  if (!should_record(a)) return pieces;
  return record_split("chunk", a, std::move(pieces), normalize_dim(dim, a.dim(), "chunk"));
}

std::vector<DTensor> split(const DTensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  std::vector<DTensor> pieces = dtensor::split(a, sizes, dim);
  if (!should_record(a)) return pieces;
  return record_split("split", a, std::move(pieces), normalize_dim(dim, a.dim(), "split"));
}

// bmm and div ------------------------------------------------------------------------------------

DTensor bmm(const DTensor& a, const DTensor& b) {
  DTensor out = dtensor::bmm(a, b);
  if (!should_record(a, b)) return out;
  return record("bmm", {a, b}, {a, b}, out, [](const DistributedNode& node, const DTensor& grad) {
    const DTensor &a = node.saved(0), &b = node.saved(1);
    DTensor ga, gb;
    if (node.needs_grad(0)) ga = dtensor::bmm(grad, dtensor::transpose(b, 1, 2));
    if (node.needs_grad(1)) gb = dtensor::bmm(dtensor::transpose(a, 1, 2), grad);
    return DGrads{ga, gb};
  });
}

}  // namespace dtensor::autograd
