// Element types of a tensor and a compile-time dispatch from DType to C++ type.
#pragma once

#include "tensor/error.hpp"
#include "tensor/half.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dtensor {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, U8, I8 };

inline constexpr DType kAllDTypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                                       DType::I32, DType::I64, DType::U8,   DType::I8};

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);      // "f32", "bf16", ...
DType dtype_from_name(std::string_view name);  // throws DTypeError for an unknown name
bool is_floating(DType dtype);

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::F64;
};
template <>
struct DTypeOf<BFloat16> {
  static constexpr DType value = DType::BF16;
};
template <>
struct DTypeOf<Half> {
  static constexpr DType value = DType::F16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::I32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::I64;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::U8;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::I8;
};
template <typename T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

// The type arithmetic on T is done in: float for the 16-bit float types, T otherwise.
template <typename T>
struct ComputeTypeOf {
  using type = T;
};
template <>
struct ComputeTypeOf<BFloat16> {
  using type = float;
};
template <>
struct ComputeTypeOf<Half> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeTypeOf<T>::type;

// Calls fn.template operator()<T>() with T the C++ type of dtype:
//   visit_dtype(t.dtype(), [&]<typename T>() { ... });
template <typename Fn>
decltype(auto) visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32:
      return fn.template operator()<float>();
    case DType::F64:
      return fn.template operator()<double>();
    case DType::BF16:
      return fn.template operator()<BFloat16>();
    case DType::F16:
      return fn.template operator()<Half>();
    case DType::I32:
      return fn.template operator()<int32_t>();
    case DType::I64:
      return fn.template operator()<int64_t>();
    case DType::U8:
      return fn.template operator()<uint8_t>();
    case DType::I8:
      return fn.template operator()<int8_t>();
  }
  fail<DTypeError>("visit_dtype", "unknown dtype code {}", int(dtype));
}

}  // namespace dtensor

template <>
struct fmt::formatter<dtensor::DType> : fmt::formatter<std::string_view> {
  auto format(dtensor::DType d, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(dtensor::dtype_name(d), ctx);
  }
};
