// Joining and splitting (cat, chunk, split) and gathers (index_select, embedding).
#include "tensor/device_kernels.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

#include <cstring>

namespace dtensor {
namespace {

// torch.cat skips 1-D tensors of shape [0] whatever the other tensors' rank (a legacy rule that
// lets code start from an empty accumulator); we follow it.
bool is_legacy_empty(const Tensor& t) { return t.dim() == 1 && t.shape()[0] == 0; }

void check_cat_inputs(const std::vector<Tensor>& tensors, const Tensor& reference, int64_t dim, const char* op) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check<DTypeError>(t.dtype() == reference.dtype(), op, "tensors[{}] has dtype {}, expected {} like the others", i,
                      t.dtype(), reference.dtype());
    if (is_legacy_empty(t)) continue;
    check<ShapeError>(t.dim() == reference.dim(), op, "tensors[{}] has {} dims (shape {}), expected {} (shape {})", i,
                      t.dim(), shape_str(t.shape()), reference.dim(), shape_str(reference.shape()));
    for (int64_t d = 0; d < t.dim(); ++d) {
      check<ShapeError>(d == dim || t.shape()[size_t(d)] == reference.shape()[size_t(d)], op,
                        "tensors[{}] has shape {}, expected size {} in dim {} (shape {})", i, shape_str(t.shape()),
                        reference.shape()[size_t(d)], d, shape_str(reference.shape()));
    }
  }
}

// Index values of a (any shape) i32/i64 tensor in row-major order, each checked against
// [0, size).
std::vector<int64_t> read_indices(const Tensor& index, int64_t size, int64_t dim, const char* op) {
  check<DTypeError>(index.dtype() == DType::I32 || index.dtype() == DType::I64, op,
                    "index must have dtype i32 or i64, got {}", index.dtype());
  std::vector<int64_t> values;
  values.reserve(size_t(index.numel()));
  visit_dtype(index.dtype(), [&]<typename I>() {
    if constexpr (std::is_same_v<I, int32_t> || std::is_same_v<I, int64_t>) {
      const I* p = detail::cdata<I>(index);
      detail::StridedLoop<1> loop(index.shape(), {index.strides()});
      loop.for_each_run([&](const auto& offsets, int64_t n, const auto& strides) {
        for (int64_t i = 0; i < n; ++i) values.push_back(int64_t(p[offsets[0] + i * strides[0]]));
      });
    }
  });
  for (int64_t v : values) {
    check<ValueError>(v >= 0 && v < size, op, "index {} is out of range for dim {} of size {} (valid range [0, {}))", v,
                      dim, size, size);
  }
  return values;
}

// a with dim replaced by the rows at the given (already checked) indices, as a new tensor.
Tensor gather_along(const Tensor& a, int64_t dim, const std::vector<int64_t>& indices) {
  Shape shape = a.shape();
  shape[size_t(dim)] = int64_t(indices.size());
  Tensor out = Tensor::empty(shape, a.dtype());
  if (out.numel() == 0) return out;
  if (a.is_contiguous()) {
    // Each index picks `inner` consecutive elements in every one of `outer` blocks.
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < dim; ++d) outer *= a.shape()[size_t(d)];
    for (int64_t d = dim + 1; d < a.dim(); ++d) inner *= a.shape()[size_t(d)];
    const size_t row_bytes = size_t(inner) * a.element_size();
    const int64_t n = a.shape()[size_t(dim)];
    const auto* src = static_cast<const std::byte*>(a.data_ptr());
    auto* dst = static_cast<std::byte*>(out.data_ptr());
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t idx : indices) {
        std::memcpy(dst, src + size_t(o * n + idx) * row_bytes, row_bytes);
        dst += row_bytes;
      }
    }
    return out;
  }
  for (size_t i = 0; i < indices.size(); ++i) {
    out.select(dim, int64_t(i)).copy_from(a.select(dim, indices[i]));
  }
  return out;
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  const char* op = "cat";
  check<ValueError>(!tensors.empty(), op, "expected a non-empty list of tensors");
  // Pure copies into views of the result, so cat serves every device (all on one).
  for (const Tensor& t : tensors) {
    detail::check_defined(t, op, "tensors");
    check<DeviceError>(t.device() == tensors[0].device(), op, "tensors are on {} and {}; all must be on one device",
                       tensors[0].device(), t.device());
  }
  // The first tensor that is not a legacy [0] decides the shape; if all are, the result is [0].
  const Tensor* reference = &tensors[0];
  for (const Tensor& t : tensors) {
    if (!is_legacy_empty(t)) {
      reference = &t;
      break;
    }
  }
  check<ShapeError>(reference->dim() > 0, op, "cannot concatenate 0-d tensors");
  const int64_t d = normalize_dim(dim, reference->dim(), op);
  check_cat_inputs(tensors, *reference, d, op);

  Shape shape = reference->shape();
  shape[size_t(d)] = 0;
  for (const Tensor& t : tensors) {
    if (!is_legacy_empty(t) || reference->dim() == 1) shape[size_t(d)] += t.shape()[size_t(d)];
  }
  Tensor out = Tensor::empty(shape, reference->dtype(), reference->device());
  int64_t offset = 0;
  for (const Tensor& t : tensors) {
    if (is_legacy_empty(t) && reference->dim() != 1) continue;
    const int64_t length = t.shape()[size_t(d)];
    if (length > 0 && t.numel() > 0) out.narrow(d, offset, length).copy_from(t);
    offset += length;
  }
  return out;
}

// chunk and split only make views, so unlike the kernels they work on any device.
std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim) {
  const char* op = "chunk";
  detail::check_defined(a, op, "a");
  check<ValueError>(chunks > 0, op, "chunks must be positive, got {}", chunks);
  const int64_t d = normalize_dim(dim, a.dim(), op);
  const int64_t n = a.shape()[size_t(d)];
  if (n == 0) {
    // torch.chunk gives `chunks` empty pieces for an empty dim.
    return std::vector<Tensor>(size_t(chunks), a);
  }
  const int64_t piece = (n + chunks - 1) / chunks;
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < n; start += piece) {
    pieces.push_back(a.narrow(d, start, std::min(piece, n - start)));
  }
  return pieces;
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  const char* op = "split";
  detail::check_defined(a, op, "a");
  const int64_t d = normalize_dim(dim, a.dim(), op);
  int64_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    check<ValueError>(sizes[i] >= 0, op, "sizes[{}] must be non-negative, got {}", i, sizes[i]);
    total += sizes[i];
  }
  check<ShapeError>(total == a.shape()[size_t(d)], op, "sizes must sum to the size {} of dim {} (shape {}), got sum {}",
                    a.shape()[size_t(d)], dim, shape_str(a.shape()), total);
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t size : sizes) {
    pieces.push_back(a.narrow(d, start, size));
    start += size;
  }
  return pieces;
}

Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  if (on_device(a)) return device_kernels(a, "index_select").index_select(a, dim, index);
  const char* op = "index_select";
  detail::check_cpu(a, op, "a");
  detail::check_cpu(index, op, "index");
  const int64_t d = normalize_dim(dim, a.dim(), op);
  check<ShapeError>(index.dim() <= 1, op, "index must be 0-d or 1-D, got shape {}", shape_str(index.shape()));
  return gather_along(a, d, read_indices(index, a.shape()[size_t(d)], d, op));
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  if (on_device(weight)) return device_kernels(weight, "embedding").embedding(weight, ids);
  const char* op = "embedding";
  detail::check_cpu(weight, op, "weight");
  detail::check_cpu(ids, op, "ids");
  check<ShapeError>(weight.dim() == 2, op, "weight must be 2-D [vocab, dim], got shape {}", shape_str(weight.shape()));
  Tensor rows = gather_along(weight, 0, read_indices(ids, weight.shape()[0], 0, op));
  Shape shape = ids.shape();
  shape.push_back(weight.shape()[1]);
  return rows.view(shape);
}

}  // namespace dtensor
