// Counter-based random tensors (Philox4x32-10): the value at global element index i depends only
// on (seed, i), never on how the tensor is split. So a rank can generate exactly its shard of a
// large random tensor without the rest:
//   random_block(global_shape, offset, local_shape, dtype, opts)
//     == random(global_shape, dtype, opts) narrowed to [offset, offset + local_shape)
#pragma once

#include "tensor/tensor.hpp"

#include <array>
#include <cstdint>

namespace dtensor {

enum class Distribution : uint8_t {
  Uniform,  // [a, b); integer dtypes get floor of the value
  Normal,   // mean a, standard deviation b
};

struct RandomOptions {
  uint64_t seed = 0;
  Distribution distribution = Distribution::Uniform;
  double a = 0.0;
  double b = 1.0;
};

// Philox4x32 with 10 rounds (Salmon et al., SC'11): four 32-bit words for one counter.
std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t key);

// The value of element `index` of any tensor generated with these options.
double random_value(uint64_t index, const RandomOptions& options);

Tensor random(const Shape& shape, DType dtype, const RandomOptions& options);
// The block at `offset` with `block_shape` of the global tensor random(global_shape, ...).
Tensor random_block(const Shape& global_shape, const Shape& offset, const Shape& block_shape, DType dtype,
                    const RandomOptions& options);

}  // namespace dtensor
