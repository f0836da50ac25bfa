#include "tensor/random.hpp"

#include <cmath>
#include <numbers>

namespace dtensor {

std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t key) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  std::array<uint32_t, 4> c = {uint32_t(counter), uint32_t(counter >> 32), 0u, 0u};
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kMul0) * c[0];
    uint64_t p1 = uint64_t(kMul1) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k0, uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k1, uint32_t(p0)};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return c;
}

namespace {
// A double in [0, 1) from 53 random bits.
double unit_interval(uint32_t hi, uint32_t lo) {
  uint64_t bits = (uint64_t(hi) << 21) ^ (lo >> 11);
  return double(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}
}  // namespace

double random_value(uint64_t index, const RandomOptions& options) {
  auto words = philox4x32(index, options.seed);
  double u1 = unit_interval(words[0], words[1]);
  if (options.distribution == Distribution::Uniform) return options.a + (options.b - options.a) * u1;
  // Box-Muller; 1 - u1 lies in (0, 1] so the log is finite.
  double u2 = unit_interval(words[2], words[3]);
  double radius = std::sqrt(-2.0 * std::log(1.0 - u1));
  return options.a + options.b * radius * std::cos(2.0 * std::numbers::pi * u2);
}

Tensor random(const Shape& shape, DType dtype, const RandomOptions& options) {
  return random_block(shape, Shape(shape.size(), 0), shape, dtype, options);
}

Tensor random_block(const Shape& global_shape, const Shape& offset, const Shape& block_shape, DType dtype,
                    const RandomOptions& options) {
  const size_t ndim = global_shape.size();
  check<ShapeError>(offset.size() == ndim && block_shape.size() == ndim, "random_block",
                    "offset {} and block shape {} must have as many dims as the global shape {}", shape_str(offset),
                    shape_str(block_shape), shape_str(global_shape));
  for (size_t d = 0; d < ndim; ++d) {
    check<ShapeError>(offset[d] >= 0 && block_shape[d] >= 0 && offset[d] + block_shape[d] <= global_shape[d],
                      "random_block", "block [{}, {}) of dim {} lies outside size {}", offset[d],
                      offset[d] + block_shape[d], d, global_shape[d]);
  }
  Tensor out = Tensor::empty(block_shape, dtype);
  const Shape global_strides = contiguous_strides(global_shape);
  std::vector<int64_t> index(ndim, 0);
  visit_dtype(dtype, [&]<typename T>() {
    T* p = out.data<T>();
    for (int64_t i = 0; i < out.numel(); ++i) {
      int64_t global = 0;
      for (size_t d = 0; d < ndim; ++d) global += (offset[d] + index[d]) * global_strides[d];
      double v = random_value(uint64_t(global), options);
      p[i] = std::is_floating_point_v<compute_t<T>> ? T(compute_t<T>(v)) : T(compute_t<T>(std::floor(v)));
      for (size_t d = ndim; d-- > 0;) {  // row-major odometer over the block
        if (++index[d] < block_shape[d]) break;
        index[d] = 0;
      }
    }
  });
  return out;
}

}  // namespace dtensor
