// Reading safetensors files (https://github.com/huggingface/safetensors) through a memory map.
//
// Layout: 8 bytes little-endian header length N, N bytes of JSON header, then the data section.
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}
// (offsets relative to the data section) and may hold "__metadata__": {string: string}.
//
// open() validates the whole header before any tensor byte is touched: the length bound, the
// JSON, every dtype, shape and offset range, the byte size of every tensor and that no two
// tensors overlap. Each violation is a typed error naming the file and the tensor.
//
//   SafetensorsFile file = SafetensorsFile::open("model.safetensors");
//   Tensor w = file.read("lm_head.weight");                       // a copy of the whole tensor
//   Tensor cols = file.read_block("lm_head.weight", {0, 512}, {4096, 512});  // only that box
//
// read_block copies the box straight from the mapping, one memcpy per contiguous run, and never
// builds the full tensor; it copies slabs of rows of a few MiB and unmaps each slab's touched
// pages from this process right after (MADV_DONTNEED), so loading a slice of every tensor keeps
// resident memory near the slice size, even for strided columns of a large tensor.
#pragma once

#include "io/tensor_source.hpp"
#include "tensor/tensor.hpp"

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dtensor::io {

struct TensorInfo {
  DType dtype = DType::F32;
  Shape shape;
};

// The safetensors dtype string of ours ("F32", "BF16", ...) and back. The reverse throws
// DTypeError naming `what` (e.g. "file x: tensor 'w'") for a dtype string we lack or do not know.
std::string_view safetensors_dtype_name(DType dtype);
DType dtype_from_safetensors(std::string_view name, const std::string& what);

// Copies the box [offset, offset + out.shape()) of a row-major tensor of `shape` whose bytes
// start at `base` into `out` (same dtype). `out` may be any CPU view whose innermost dim is
// dense (a narrow of a larger tensor, say); each contiguous run is one memcpy.
void copy_box_from_dense(const std::byte* base, const Shape& shape, const Shape& offset, const Tensor& out);

class SafetensorsFile {
 public:
  // Maps and validates the file (ValueError / ShapeError / DTypeError naming file and tensor).
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const;
  // Tensor names in the order of their data offsets.
  const std::vector<std::string>& names() const;
  bool contains(std::string_view name) const;
  // ValueError naming the tensor and the file if it is not there.
  const TensorInfo& info(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const;
  uint64_t file_bytes() const;

  // A new contiguous CPU tensor holding a copy of the whole tensor.
  Tensor read(std::string_view name) const;
  // A new contiguous CPU tensor holding the box [offset, offset + sizes) (ShapeError if the box
  // leaves the tensor).
  Tensor read_block(std::string_view name, const Shape& offset, const Shape& sizes) const;
  // The same into a caller's view (`out` gives the sizes; its dtype must match the tensor's).
  void read_block_into(std::string_view name, const Shape& offset, const Tensor& out) const;

 private:
  struct State;
  explicit SafetensorsFile(std::shared_ptr<const State> state);
  // Drops the mapped pages around the file bytes [begin, end) from this process (MADV_DONTNEED).
  void release_pages(uint64_t begin, uint64_t end) const;
  std::shared_ptr<const State> state_;
};

// A box reader of the tensor `name` of `file` (ValueError naming both if it is not there).
TensorSource tensor_source(const SafetensorsFile& file, const std::string& name);

}  // namespace dtensor::io
