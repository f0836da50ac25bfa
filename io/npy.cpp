#include "io/npy.hpp"

#include "tensor/error.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>

namespace dtensor::io {

namespace {

std::string shape_tuple(const Shape& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

}  // namespace

std::string npy_header(const Shape& shape) {
  std::string dict = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", shape_tuple(shape));
  const size_t prefix = 10;  // magic (6) + version (2) + header length (2)
  const size_t padded = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(padded - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string header = "\x93NUMPY";
  header += char(1);
  header += char(0);
  header += char(dict.size() & 0xff);
  header += char(dict.size() >> 8);
  return header + dict;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  check<DTypeError>(is_floating(tensor.dtype()), "write_npy", "{}: expected a floating tensor, got {}", path,
                    dtype_name(tensor.dtype()));
  const Tensor data = tensor.to(Device::cpu()).to(DType::F32).contiguous();
  const std::string header = npy_header(data.shape());
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(header.data(), std::streamsize(header.size()));
  file.write(static_cast<const char*>(data.data_ptr()), std::streamsize(data.nbytes()));
  file.close();
  check(bool(file), "write_npy", "{}: cannot write the file", path);
}

}  // namespace dtensor::io
