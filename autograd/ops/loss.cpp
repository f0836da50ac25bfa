// Cross-entropy with its backward (torch's F.cross_entropy with reduction "mean" and ignore_index),
// built from the vocab-block steps the DTensor form shares (vocab_block.hpp).
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "autograd/ops/vocab_block.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <limits>

namespace dtensor::autograd {

namespace detail {

Tensor checked_labels(const char* op, const Shape& logits_shape, DType logits_dtype, const Tensor& labels,
                      int64_t ignore_index) {
  check<DTypeError>(is_floating(logits_dtype), op, "logits must have a floating dtype, got {}", logits_dtype);
  check<ShapeError>(!logits_shape.empty(), op, "logits must be [..., vocab], got a 0-d tensor");
  check<ValueError>(labels.defined(), op, "labels is undefined");
  check<DTypeError>(labels.dtype() == DType::I32 || labels.dtype() == DType::I64, op,
                    "labels must have dtype i32 or i64, got {}", labels.dtype());
  const Shape rows(logits_shape.begin(), logits_shape.end() - 1);
  check<ShapeError>(labels.shape() == rows, op, "labels has shape {}, expected {} (logits {} less the vocab dim)",
                    shape_str(labels.shape()), shape_str(rows), shape_str(logits_shape));
  Tensor values = labels.to(Device::cpu()).to(DType::I64).contiguous();
  const int64_t vocab = logits_shape.back();
  const int64_t* label = values.data<int64_t>();
  for (int64_t i = 0; i < values.numel(); ++i) {
    if (label[i] == ignore_index) continue;
    check<ValueError>(label[i] >= 0 && label[i] < vocab, op,
                      "labels at flat position {} is {}; labels must lie in [0, {}) (the vocab size) or equal "
                      "ignore_index {}",
                      i, label[i], vocab, ignore_index);
  }
  return values;
}

int64_t counted_labels(const Tensor& labels, int64_t ignore_index) {
  const std::vector<int64_t> values = labels.contiguous().to_vector<int64_t>();
  return int64_t(std::count_if(values.begin(), values.end(), [&](int64_t v) { return v != ignore_index; }));
}

Tensor mean_loss(const Tensor& sum, int64_t count, DType dtype) {
  // 1 / 0 = inf and 0 * inf = NaN: an all-ignored batch gives NaN, as torch.
  return dtensor::mul(sum, 1.0 / double(count)).to(dtype);
}

VocabBlock::VocabBlock(const Tensor& logits, const Tensor& labels, int64_t ignore_index, int64_t offset)
    : shape_(logits.shape()), dtype_(logits.dtype()) {
  const int64_t width = logits.size(-1);
  const Tensor host_labels = labels.contiguous();
  const int64_t rows = host_labels.numel();
  logits_ = to_compute(logits).reshape({rows, width});
  const int64_t* label = host_labels.data<int64_t>();
  std::vector<int64_t> column(size_t(rows), -1), position(size_t(rows), 0);
  std::vector<uint8_t> in_block(size_t(rows), 0), counted(size_t(rows), 0);
  for (int64_t r = 0; r < rows; ++r) {
    const size_t i = size_t(r);
    const int64_t c = label[r] - offset;
    counted[i] = label[r] != ignore_index;
    in_block[i] = counted[i] && c >= 0 && c < width;
    if (in_block[i]) column[i] = c;
    position[i] = r * width + (in_block[i] ? c : 0);
  }
  const Device device = logits.device();
  // Column numbers compare as floats, exact below 2^24 in f32: the comparison kernels are far faster
  // on floats than on i64.
  const DType column_dtype = width < (int64_t(1) << 24) ? DType::F32 : DType::F64;
  column_ = Tensor::from_vector(column, {rows, 1}).to(column_dtype).to(device);
  position_ = Tensor::from_vector(position, {rows}).to(device);
  in_block_ = Tensor::from_vector(in_block, {rows}).to(device);
  counted_ = Tensor::from_vector(counted, {rows, 1}).to(device);
}

Tensor VocabBlock::row_max() const {
  if (logits_.size(1) == 0) {
    return Tensor::full({logits_.size(0)}, -std::numeric_limits<double>::infinity(), logits_.dtype(), logits_.device());
  }
  return dtensor::amax(logits_, {1});
}

Tensor VocabBlock::sum_exp(const Tensor& max) const {
  return dtensor::sum(dtensor::exp(dtensor::sub(logits_, max.reshape({-1, 1}))), {1});
}

Tensor VocabBlock::target() const {
  if (logits_.size(1) == 0) return Tensor::zeros({logits_.size(0)}, logits_.dtype(), logits_.device());
  Tensor found = dtensor::index_select(logits_.reshape({-1}), 0, position_);
  return dtensor::where(in_block_, found, scalar_like(found, 0.0));
}

Tensor VocabBlock::loss_sum(const Tensor& lse, const Tensor& target) const {
  Tensor per_row = dtensor::sub(lse, target);
  return dtensor::sum(dtensor::where(counted_.reshape({-1}), per_row, scalar_like(per_row, 0.0)));
}

Tensor VocabBlock::gradient(const Tensor& lse, const Tensor& grad, int64_t count) const {
  Tensor softmax = dtensor::exp(dtensor::sub(logits_, lse.reshape({-1, 1})));
  Tensor columns = Tensor::arange({logits_.size(1)}, column_.dtype()).to(logits_.device());
  Tensor one_hot = dtensor::eq(columns, column_).to(logits_.dtype());
  Tensor scale = dtensor::mul(to_compute(grad), 1.0 / double(count));
  Tensor row_scale = dtensor::where(counted_, scale, scalar_like(scale, 0.0));
  return dtensor::mul(dtensor::sub(softmax, one_hot), row_scale).to(dtype_).reshape(shape_);
}

Tensor log_sum_exp(const Tensor& max, const Tensor& sum_exp) { return dtensor::add(dtensor::log(sum_exp), max); }

}  // namespace detail

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  const char* op = "cross_entropy";
  check<ValueError>(logits.defined(), op, "logits is undefined");
  Tensor values = detail::checked_labels(op, logits.shape(), logits.dtype(), labels, ignore_index);
  const int64_t count = detail::counted_labels(values, ignore_index);
  detail::VocabBlock block(logits, values, ignore_index, /*offset=*/0);
  Tensor max = block.row_max();
  Tensor lse = detail::log_sum_exp(max, block.sum_exp(max));
  Tensor loss = detail::mean_loss(block.loss_sum(lse, block.target()), count, logits.dtype());
  if (!should_record(logits)) return loss;
  return record(op, {logits}, {logits, values, lse}, loss,
                [ignore_index, count](const FunctionNode& node, const Tensor& grad) {
                  detail::VocabBlock block(node.saved(0), node.saved(1), ignore_index, /*offset=*/0);
                  return Grads{block.gradient(node.saved(2), grad, count)};
                });
}

}  // namespace dtensor::autograd
