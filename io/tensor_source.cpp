#include "io/tensor_source.hpp"

#include "tensor/error.hpp"

namespace dtensor::io {

void check_box(const Shape& shape, const Shape& offset, const Shape& sizes, const std::string& what) {
  check<ShapeError>(offset.size() == shape.size() && sizes.size() == shape.size(), "read_block",
                    "{}: box offset {} / sizes {} must have one entry per dim of shape {}", what, shape_str(offset),
                    shape_str(sizes), shape_str(shape));
  for (size_t d = 0; d < shape.size(); ++d) {
    check<ShapeError>(offset[d] >= 0 && sizes[d] >= 0 && offset[d] + sizes[d] <= shape[d], "read_block",
                      "{}: box offset {} sizes {} leaves shape {} in dim {}", what, shape_str(offset), shape_str(sizes),
                      shape_str(shape), d);
  }
}

Tensor TensorSource::read(const Shape& offset, const Shape& sizes) const {
  check_box(shape, offset, sizes, "TensorSource");
  Tensor out = Tensor::empty(sizes, dtype);
  read_box(offset, out);
  return out;
}

Tensor TensorSource::read_all() const { return read(Shape(shape.size(), 0), shape); }

Tensor TensorSource::read_packed(int64_t dim, int64_t parts, const Shape& offset, const Shape& sizes) const {
  dim = normalize_dim(dim, int64_t(shape.size()), "read_packed");
  check<ShapeError>(parts > 0 && shape[dim] % parts == 0, "read_packed",
                    "dim {} of shape {} does not split into {} packed parts", dim, shape_str(shape), parts);
  Shape part_shape = shape;
  part_shape[dim] /= parts;
  check_box(part_shape, offset, sizes, "read_packed (box within one part)");
  Shape out_sizes = sizes;
  out_sizes[dim] *= parts;
  Tensor out = Tensor::empty(out_sizes, dtype);
  for (int64_t p = 0; p < parts; ++p) {
    Shape part_offset = offset;
    part_offset[dim] += p * part_shape[dim];
    read_box(part_offset, out.narrow(dim, p * sizes[dim], sizes[dim]));
  }
  return out;
}

TensorSource tensor_source(const Tensor& full) {
  return {full.dtype(), full.shape(), [full](const Shape& offset, const Tensor& out) {
            check_box(full.shape(), offset, out.shape(), "TensorSource");
            Tensor box = full;
            for (int64_t d = 0; d < full.dim(); ++d) box = box.narrow(d, offset[d], out.size(d));
            out.copy_from(box);
          }};
}

}  // namespace dtensor::io
