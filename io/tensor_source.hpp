// The source interface the layers above read parameters through (as MLX's io::Reader in load.h):
// nn/ strategies take a TensorSource and read only their rank's box of it, whatever holds the
// tensor. io/ builds them over checkpoint files (io/safetensors.hpp, io/checkpoint.hpp); this
// header builds them over an in-memory tensor. It is the only io/ header nn/ includes.
//
//   TensorSource source = tensor_source(full);                  // or checkpoint.source(name)
//   Tensor rows = source.read({offset, 0}, {rows, source.shape[1]});
#pragma once

#include "tensor/tensor.hpp"

#include <functional>
#include <string>

namespace dtensor::io {

// A tensor that can be read box by box without materialising it: what a parallel strategy gets
// to produce its rank's local part (reading only that part). Built over a checkpoint file, or
// over an in-memory tensor (tests, freshly initialised weights).
struct TensorSource {
  DType dtype = DType::F32;
  Shape shape;
  // Fills `out` (a CPU view of dtype `dtype`) with the box starting at `offset`.
  std::function<void(const Shape& offset, const Tensor& out)> read_box;

  // A new contiguous tensor holding the box [offset, offset + sizes).
  Tensor read(const Shape& offset, const Shape& sizes) const;
  Tensor read_all() const;
  // For a weight that packs `parts` equal matrices along `dim` (gate_up = [gate; up]): the box
  // (offset, sizes) taken inside every part, concatenated along `dim` in part order, so a rank
  // sharding the packed dim gets [gate_r; up_r]. One box read per part; no full tensor.
  Tensor read_packed(int64_t dim, int64_t parts, const Shape& offset, const Shape& sizes) const;
};

// A source over an in-memory tensor; each box is copied out of it.
TensorSource tensor_source(const Tensor& full);

// ShapeError, prefixed by `what`, unless the box [offset, offset + sizes) lies inside `shape`
// with one entry per dim.
void check_box(const Shape& shape, const Shape& offset, const Shape& sizes, const std::string& what);

}  // namespace dtensor::io
