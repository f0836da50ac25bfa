// Local element-wise reductions used by the collectives' own algorithms (internal header).
#pragma once

#include "collectives/reduce_op.hpp"
#include "tensor/dtype.hpp"

#include <cstdint>
#include <span>

namespace dtensor::detail {

// out[i] = srcs[0][i] op srcs[1][i] op ... op srcs[k-1][i], combined left to right in the
// compute type (float for bf16/f16) and rounded to the dtype once; Avg divides the sum by k.
// The fixed order is what makes every rank that reduces the same inputs get bitwise the same
// result. out may be one of srcs (exactly, not partially overlapping). With `stream`, out is
// written with non-temporal stores that bypass the cache: for large outputs nobody reads soon,
// it saves reading every output line from memory before overwriting it.
void reduce_blocks(DType dtype, ReduceOp op, void* out, std::span<const void* const> srcs, int64_t n,
                   bool stream = false);

// buffer[i] /= divisor in the compute type: the Avg step after a transport summed the inputs.
void divide_elements(DType dtype, void* buffer, int64_t n, int64_t divisor);

}  // namespace dtensor::detail
