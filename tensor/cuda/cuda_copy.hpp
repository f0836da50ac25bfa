// Copies and fills of tensors of which at least one is on a CUDA device (internal).
#pragma once

#include "tensor/tensor.hpp"

namespace dtensor::cuda {

// dst = src element-wise with dtype conversion; src already has dst's shape (a broadcast view
// is fine). Host <-> device copies return once the data has arrived; device-side copies are
// queued on the destination device's current stream.
void copy_tensor(const Tensor& dst, const Tensor& src);
void fill_tensor(const Tensor& dst, double value);

}  // namespace dtensor::cuda
