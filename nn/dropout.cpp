// Dropout: the keep mask of an element is a function of (seed, call number, global element index)
// through the Philox counter (tensor/random.hpp), so every sharding of a tensor drops the same
// elements, and the backward regenerates the mask of its gradient's block instead of storing it.
#include "autograd/node.hpp"
#include "dtensor/autograd/node.hpp"
#include "nn/layers.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

namespace dtensor::nn {

namespace {

// What fixes one call's mask: the Philox stream and the drop probability.
struct DropoutDraw {
  RandomOptions stream;
  double p;
};

// 1 / (1 - p) where the element is kept, 0 where dropped, for the block of `global` at `offset`
// with `local` extent. Drawn on the host, so a GPU tensor drops the same elements as its CPU copy.
Tensor keep_factors(const DropoutDraw& draw, const Shape& global, const Shape& offset, const Shape& local, DType dtype,
                    Device device) {
  Tensor uniform = random_block(global, offset, local, DType::F64, draw.stream);
  Tensor keep = ge(uniform, Tensor::full({}, draw.p, DType::F64));
  Tensor scale = Tensor::full({}, 1.0 / (1.0 - draw.p), dtype);
  return where(keep, scale, Tensor::zeros({}, dtype)).to(device);
}

// The factors of a DTensor's local block (a Partial or Replicate dim is whole: offset 0).
Tensor keep_factors(const DropoutDraw& draw, const DTensor& x) {
  const Tensor& local = x.local_tensor();
  Shape offset = local_block(x.shape(), x.mesh().shape(), x.mesh().coordinate(), x.placements()).offset;
  return keep_factors(draw, x.shape(), offset, local.shape(), x.dtype(), local.device());
}

Tensor dropout(const Tensor& x, const DropoutDraw& draw) {
  Shape origin(x.shape().size(), 0);
  Tensor out = mul(x, keep_factors(draw, x.shape(), origin, x.shape(), x.dtype(), x.device()));
  if (!autograd::should_record(x)) return out;
  return autograd::record("dropout", {x}, {}, out, [draw](const autograd::FunctionNode&, const Tensor& grad) {
    Shape origin(grad.shape().size(), 0);
    return autograd::Grads{
        mul(grad, keep_factors(draw, grad.shape(), origin, grad.shape(), grad.dtype(), grad.device()))};
  });
}

// Masking is linear per element: a Partial input drops alike on every rank and stays partial, and
// the gradient, in whatever placements it arrives, is masked block by block in those placements.
DTensor dropout(const DTensor& x, const DropoutDraw& draw) {
  Tensor block = mul(x.local_tensor(), keep_factors(draw, x));
  DTensor out = DTensor::from_local(block, x.mesh(), x.placements(), x.shape());
  if (!autograd::should_record(x)) return out;
  // The node of dtensor/autograd/node.hpp (this library), as a DTensor op writes its own.
  return autograd::record("dropout", {x}, {}, out, [draw](const autograd::DistributedNode&, const DTensor& grad) {
    Tensor masked = mul(grad.local_tensor(), keep_factors(draw, grad));
    return autograd::DGrads{DTensor::from_local(masked, grad.mesh(), grad.placements(), grad.shape())};
  });
}

}  // namespace

Dropout::Dropout(double p, uint64_t seed) : Module("Dropout"), p_(p), seed_(seed) {
  check<ValueError>(p >= 0 && p < 1, "Dropout", "p must be in [0, 1), got {}", p);
}

Value Dropout::forward(const Value& x) {
  if (!training_ || p_ == 0) return x;
  // A fresh stream per call; the element's global index picks its number within the stream.
  DropoutDraw draw{{.seed = seed_ * 0x9E3779B97F4A7C15ull + calls_++}, p_};
  if (x.is_distributed()) return dropout(x.dtensor(), draw);
  return dropout(x.tensor(), draw);
}

}  // namespace dtensor::nn
