// The steps of cross-entropy over one block of vocab columns, shared by the local op (one block:
// the whole vocab) and the DTensor op (each rank's block of a vocab-sharded logits, its row
// statistics combined by all-reduces between the steps, so the logits are never gathered).
//
// With lse = max + log(sum(exp(x - max))) per row, loss = sum over counted rows of (lse - x[label]),
// divided by the number of counted labels (those != ignore_index), and
//   d loss / d x = (softmax(x) - one_hot(label)) * grad / count  on counted rows, 0 on the others.
// Everything runs in f32 for bf16 / f16 logits (f64 for f64) and rounds once to the logits' dtype.
#pragma once

#include "tensor/tensor.hpp"

#include <cstdint>

namespace dtensor::autograd::detail {

// Checks cross-entropy's arguments (global shapes): logits floating and at least 1-D, labels i32 /
// i64 of the logits' shape less the last dim (DTypeError / ShapeError naming the argument), every
// label in [0, vocab) or equal to ignore_index (ValueError naming labels, the flat position and the
// value). Returns the labels as a contiguous i64 host tensor.
Tensor checked_labels(const char* op, const Shape& logits_shape, DType logits_dtype, const Tensor& labels,
                      int64_t ignore_index);

// The number of labels that count (!= ignore_index).
int64_t counted_labels(const Tensor& labels, int64_t ignore_index);

// sum / count as a 0-d tensor of `dtype`: NaN when nothing counts, as torch.
Tensor mean_loss(const Tensor& sum, int64_t count, DType dtype);

// The rows of logits restricted to the vocab columns [offset, offset + width) one block holds.
class VocabBlock {
 public:
  // logits: the block [..., width]; labels: the global labels of its rows (i64 host tensor of the
  // block's leading shape).
  VocabBlock(const Tensor& logits, const Tensor& labels, int64_t ignore_index, int64_t offset);

  // Per row [rows], in the compute dtype: the largest logit (-inf in a block of no columns) ...
  Tensor row_max() const;
  // ... the sum of exp(x - max) for a max taken over the whole row (0 without columns) ...
  Tensor sum_exp(const Tensor& max) const;
  // ... and the label's logit where this block holds the label's column, else 0.
  Tensor target() const;
  // The sum over counted rows of lse - target (0-d, compute dtype).
  Tensor loss_sum(const Tensor& lse, const Tensor& target) const;
  // The block's gradient for loss = sum / count seeded with grad (0-d), in the logits' dtype and
  // the block's shape.
  Tensor gradient(const Tensor& lse, const Tensor& grad, int64_t count) const;

 private:
  Tensor logits_;    // [rows, width], compute dtype
  Shape shape_;      // the block's shape
  DType dtype_;      // the block's dtype
  Tensor column_;    // [rows, 1] f32 / f64: the label's column in the block; -1 outside the block or ignored
  Tensor position_;  // [rows] i64: the flat index of that column (any valid one where there is none)
  Tensor in_block_;  // [rows] u8: whether the block holds the label's column
  Tensor counted_;   // [rows, 1] u8: whether the row's label counts
};

// max + log(sum_exp), per row.
Tensor log_sum_exp(const Tensor& max, const Tensor& sum_exp);

}  // namespace dtensor::autograd::detail
