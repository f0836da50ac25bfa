// NumPy .npy files (format version 1.0) of f32 tensors, as numpy.load reads them.
//
//   write_npy("logits.npy", logits);      // any float dtype; stored as '<f4', C order
//   np.load("logits.npy").shape           # (prompt length, vocab)
//
// Layout: "\x93NUMPY", version 1 0, a little-endian uint16 header length, the header dict
// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" padded with spaces to a newline
// so the data starts at a multiple of 64 bytes, then the elements in row-major order.
#pragma once

#include "tensor/tensor.hpp"

#include <string>

namespace dtensor::io {

// The header (magic through the padding newline) of an f32 array of this shape.
std::string npy_header(const Shape& shape);

// Writes `tensor` (a CPU floating tensor, converted to f32) to `path`. ValueError naming the path
// when it cannot be written; DTypeError for a non-floating tensor.
void write_npy(const std::string& path, const Tensor& tensor);

}  // namespace dtensor::io
