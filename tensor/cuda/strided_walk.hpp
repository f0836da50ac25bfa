// Builds the StridedWalk a kernel iterates from tensor shapes and strides (host side).
#pragma once

#include "tensor/cuda/launch.hpp"
#include "tensor/tensor.hpp"

#include <array>

namespace dtensor::cuda {

// Drops size-1 dims and merges neighbouring dims that are contiguous for every operand, so a
// walk over contiguous tensors has one dim. ShapeError when more than kMaxDims dims remain.
template <int N>
kernels::StridedWalk<N> make_walk(const Shape& shape, const std::array<Shape, N>& strides, const char* op) {
  kernels::StridedWalk<N> walk;
  Shape kept;
  std::array<Shape, N> kept_strides;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merges = !kept.empty();
    for (int k = 0; k < N && merges; ++k) merges = kept_strides[k].back() == strides[k][d] * shape[d];
    if (merges) {
      kept.back() *= shape[d];
      for (int k = 0; k < N; ++k) kept_strides[k].back() = strides[k][d];
    } else {
      kept.push_back(shape[d]);
      for (int k = 0; k < N; ++k) kept_strides[k].push_back(strides[k][d]);
    }
  }
  check<ShapeError>(kept.size() <= size_t(kernels::kMaxDims), op,
                    "CUDA kernels walk at most {} non-mergeable dims, got {} for shape {}", kernels::kMaxDims,
                    kept.size(), shape_str(shape));
  walk.ndim = int(kept.size());
  for (size_t d = 0; d < kept.size(); ++d) {
    walk.shape[d] = kept[d];
    for (int k = 0; k < N; ++k) walk.strides[k][d] = kept_strides[k][d];
  }
  return walk;
}

inline kernels::ElemType elem_type(DType dtype) { return kernels::ElemType(uint8_t(dtype)); }

}  // namespace dtensor::cuda
