// GgufFile's tensor reads: dequantized boxes (decoding only the blocks that cover the columns
// asked, in the rows asked) and raw whole-block slices.
#include "io/gguf.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace dtensor::io {

namespace {

// Rows are decoded in slabs of about this many source bytes, each slab's pages released after:
// the most of the mapping a read holds resident at once (as the safetensors reader does).
constexpr uint64_t kResidentSlabBytes = uint64_t(4) << 20;

void release_pages(const std::byte* map, uint64_t map_size, uint64_t begin, uint64_t end) {
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t first = begin / page * page;
  const uint64_t last = std::min(map_size, (end + page - 1) / page * page);
  if (last > first) ::madvise(const_cast<std::byte*>(map) + first, last - first, MADV_DONTNEED);
}

std::string describe(const std::string& path, std::string_view name) {
  return fmt::format("{}: tensor '{}'", path, name);
}

void check_readable(const GgufTensorInfo& info, const std::string& what) {
  check<DTypeError>(ggml_type_readable(info.type), "gguf",
                    "{}: ggml type {} cannot be read (readable: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q5_K Q6_K)", what,
                    ggml_type_name(info.type));
}

// The flat row indices (over every dim but the innermost) of the rows of the box, in order.
std::vector<int64_t> box_rows(const Shape& shape, const Shape& offset, const Shape& sizes) {
  const int64_t leading = int64_t(shape.size()) - 1;
  const Shape strides = contiguous_strides(Shape(shape.begin(), shape.end() - 1));
  int64_t count = 1;
  for (int64_t d = 0; d < leading; ++d) count *= sizes[size_t(d)];
  std::vector<int64_t> rows;
  rows.reserve(size_t(count));
  std::vector<int64_t> index(size_t(leading), 0);
  for (int64_t n = 0; n < count; ++n) {
    int64_t row = 0;
    for (int64_t d = 0; d < leading; ++d) row += (offset[size_t(d)] + index[size_t(d)]) * strides[size_t(d)];
    rows.push_back(row);
    for (int64_t d = leading - 1; d >= 0; --d) {
      if (++index[size_t(d)] < sizes[size_t(d)]) break;
      index[size_t(d)] = 0;
    }
  }
  return rows;
}

}  // namespace

Tensor GgufFile::read(std::string_view name) const {
  const GgufTensorInfo& info = tensor(name);
  return read_block(name, Shape(info.shape.size(), 0), info.shape);
}

Tensor GgufFile::read_block(std::string_view name, const Shape& offset, const Shape& sizes) const {
  const GgufTensorInfo& info = tensor(name);
  const std::string what = describe(path(), name);
  check_readable(info, what);
  check_box(info.shape, offset, sizes, what);
  Tensor out = Tensor::empty(sizes, DType::F32);
  read_block_into(name, offset, out);
  return out;
}

void GgufFile::read_block_into(std::string_view name, const Shape& offset, const Tensor& out) const {
  const GgufTensorInfo& info = tensor(name);
  const std::string what = describe(path(), name);
  check_readable(info, what);
  check<DTypeError>(out.dtype() == DType::F32, "read_block", "{}: destination dtype {} must be f32 (dequantized)", what,
                    out.dtype());
  check<DeviceError>(out.device().is_cpu(), "read_block", "{}: the destination must be a CPU tensor, got {}", what,
                     out.device());
  check_box(info.shape, offset, out.shape(), what);
  if (out.numel() == 0) return;
  if (!out.is_contiguous()) {  // decode into a dense buffer, then one strided copy
    Tensor dense = Tensor::empty(out.shape(), DType::F32);
    read_block_into(name, offset, dense);
    out.copy_from(dense);
    return;
  }
  const int64_t block = ggml_block_size(info.type), cols = out.shape().back(), col0 = offset.back();
  const int64_t first_block = col0 / block, last_block = (col0 + cols + block - 1) / block;
  const int64_t row_bytes = info.row_bytes();
  const int64_t rows_per_slab =
      std::max<int64_t>(1, int64_t(kResidentSlabBytes / uint64_t(std::max<int64_t>(row_bytes, 1))));
  const std::vector<int64_t> rows = box_rows(info.shape, offset, out.shape());
  const std::byte* base = state_map() + info.offset + first_block * ggml_block_bytes(info.type);
  std::vector<float> decoded(size_t((last_block - first_block) * block));
  auto* dst = static_cast<float*>(out.data_ptr());
  for (size_t n = 0; n < rows.size(); ++n) {
    dequantize_blocks(info.type, base + rows[n] * row_bytes, last_block - first_block, decoded.data());
    std::memcpy(dst + int64_t(n) * cols, decoded.data() + (col0 - first_block * block), size_t(cols) * sizeof(float));
    if ((n + 1) % size_t(rows_per_slab) == 0 || n + 1 == rows.size()) {  // rows ascend: the slab's span
      const int64_t slab_first = rows[n / size_t(rows_per_slab) * size_t(rows_per_slab)];
      release_pages(state_map(), file_bytes(), info.offset + uint64_t(slab_first * row_bytes),
                    info.offset + uint64_t((rows[n] + 1) * row_bytes));
    }
  }
}

Tensor GgufFile::read_blocks(std::string_view name, int64_t row0, int64_t rows, int64_t col0, int64_t cols) const {
  const GgufTensorInfo& info = tensor(name);
  const std::string what = describe(path(), name);
  const int64_t total_cols = info.shape.back();
  const int64_t total_rows = total_cols == 0 ? 0 : int64_t(info.bytes) / std::max<int64_t>(info.row_bytes(), 1);
  check<ShapeError>(
      row0 >= 0 && rows >= 0 && rows <= total_rows - row0 && col0 >= 0 && cols >= 0 && cols <= total_cols - col0,
      "read_blocks", "{}: {} rows from row {} and {} columns from column {} leave the tensor's {} rows x {} columns",
      what, rows, row0, cols, col0, total_rows, total_cols);
  const int64_t block = ggml_block_size(info.type), block_bytes = ggml_block_bytes(info.type);
  for (int64_t boundary : {col0, col0 + cols}) {
    check<ShapeError>(boundary % block == 0, "read_blocks",
                      "{}: column {} splits a {} block of {} elements (a shard boundary inside a quantization block)",
                      what, boundary, ggml_type_name(info.type), block);
  }
  const int64_t out_cols = cols / block * block_bytes, row_bytes = info.row_bytes();
  Tensor out = Tensor::empty({rows, out_cols}, DType::U8);
  auto* dst = static_cast<std::byte*>(out.data_ptr());
  const std::byte* base = state_map() + info.offset + col0 / block * block_bytes;
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * out_cols, base + (row0 + r) * row_bytes, size_t(out_cols));
  }
  if (rows > 0) {
    release_pages(state_map(), file_bytes(), info.offset + uint64_t(row0 * row_bytes),
                  info.offset + uint64_t((row0 + rows) * row_bytes));
  }
  return out;
}

TensorSource tensor_source(const GgufFile& file, const std::string& name) {
  const GgufTensorInfo& info = file.tensor(name);
  check_readable(info, describe(file.path(), name));
  return {DType::F32, info.shape,
          [file, name](const Shape& offset, const Tensor& out) { file.read_block_into(name, offset, out); }};
}

}  // namespace dtensor::io
