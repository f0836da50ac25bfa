// NumPy .npy files: writing f32 tensors (format version 1.0) as numpy.load reads them, and reading
// what numpy.save writes (versions 1.0, 2.0 and 3.0, little-endian, C order), such as the token
// ids examples/train trains on.
//
//   write_npy("logits.npy", logits);      // any float dtype; stored as '<f4', C order
//   np.load("logits.npy").shape           # (prompt length, vocab)
//   Tensor ids = read_token_ids("tokens.npy");   # np.save("tokens.npy", ids) of int32/int64 [N, T+1]
//
// Layout: "\x93NUMPY", version 1 0, a little-endian uint16 header length, the header dict
// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" padded with spaces to a newline
// so the data starts at a multiple of 64 bytes, then the elements in row-major order. Versions
// 2.0 and 3.0 have a 4-byte header length instead.
#pragma once

#include "tensor/tensor.hpp"

#include <string>

namespace dtensor::io {

// The header (magic through the padding newline) of an f32 array of this shape.
std::string npy_header(const Shape& shape);

// Writes `tensor` (a CPU floating tensor, converted to f32) to `path`. ValueError naming the path
// when it cannot be written; DTypeError for a non-floating tensor.
void write_npy(const std::string& path, const Tensor& tensor);

// Reads an array numpy.save wrote: descr '<f4' '<f8' '<i8' '<i4' '|i1' '|u1' as those dtypes,
// '<i2' '<u2' widened to i32 and '<u4' to i64. The whole file is validated first, each violation a
// typed error naming the file and the field: ValueError for a missing file, the magic, the
// version, a truncated or malformed header dict ('descr', 'fortran_order', 'shape' and nothing
// else; fortran_order must be False), or data shorter or longer than the shape says; DTypeError
// for a big-endian or unsupported descr; ShapeError for a shape that is not a tuple of
// non-negative integers or whose byte count overflows.
Tensor read_npy(const std::string& path);

// Token ids for training: read_npy of an integer array [N, T+1] with N >= 1 and T+1 >= 2, as i64.
// DTypeError naming the file for a floating array, ShapeError for another rank or too few columns.
Tensor read_token_ids(const std::string& path);

}  // namespace dtensor::io
