// One exception hierarchy for every layer (docs/design.md section 9).
//
// Messages start with the operation in brackets and end with the rank that raised them:
//   "[narrow] start + length (7) exceeds size 5 of dim 1 [rank 2]"
// The rank is known once the collectives layer has started MPI; before that it reads "rank ?".
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace dtensor {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
};

// A value the caller passed is out of range or malformed.
class ValueError : public Error {
  using Error::Error;
};
// Shapes or dims that do not fit together.
class ShapeError : public Error {
  using Error::Error;
};
// A dtype the operation does not accept, or two dtypes that disagree.
class DTypeError : public Error {
  using Error::Error;
};
// A device the operation does not support (e.g. a CUDA tensor where the CUDA backend cannot be loaded).
class DeviceError : public Error {
  using Error::Error;
};
// A communication call failed or was used inconsistently across ranks.
class CommError : public Error {
  using Error::Error;
};
// A DeviceMesh was built or sliced with bad arguments.
class MeshError : public Error {
  using Error::Error;
};

// The rank appended to every message; set by the collectives layer when MPI starts.
void set_error_rank(int rank);
int error_rank();

// Throws E with "[op] <formatted message> [rank N]".
template <typename E = ValueError, typename... Args>
[[noreturn]] void fail(const char* op, fmt::format_string<Args...> format, Args&&... args) {
  throw E(fmt::format("[{}] {}", op, fmt::format(format, std::forward<Args>(args)...)));
}

// Throws E unless the condition holds; the message is only formatted on failure.
template <typename E = ValueError, typename... Args>
void check(bool condition, const char* op, fmt::format_string<Args...> format, Args&&... args) {
  if (!condition) fail<E>(op, format, std::forward<Args>(args)...);
}

}  // namespace dtensor
