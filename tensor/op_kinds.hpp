// The kinds of elementwise and row-reduction ops a device backend implements (tensor/device_kernels.hpp).
// Plain enums only: the CUDA kernels' launch header (tensor/cuda/launch.hpp, read by nvcc) uses them too.
#pragma once

#include <cstdint>

namespace dtensor {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Max, Min, Eq, Ne, Lt, Le, Gt, Ge };
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

// AddScalar and MulScalar take the scalar operand of add(a, s) and mul(a, s).
enum class UnaryOp : uint8_t { Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Relu, Silu, Gelu, AddScalar, MulScalar };

enum class RowReduce : uint8_t { Sum, Mean, Max, Min };

}  // namespace dtensor
