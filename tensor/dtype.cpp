#include "tensor/dtype.hpp"

namespace dtensor {

size_t dtype_size(DType dtype) {
  return visit_dtype(dtype, []<typename T>() { return sizeof(T); });
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
    case DType::I64:
      return "i64";
    case DType::U8:
      return "u8";
    case DType::I8:
      return "i8";
  }
  return "?";
}

DType dtype_from_name(std::string_view name) {
  for (DType d : kAllDTypes) {
    if (dtype_name(d) == name) return d;
  }
  fail<DTypeError>("dtype_from_name", "unknown dtype '{}' (expected one of f32 f64 bf16 f16 i32 i64 u8 i8)", name);
}

bool is_floating(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F64 || dtype == DType::BF16 || dtype == DType::F16;
}

}  // namespace dtensor
