#include "tensor/quant/quantized.hpp"

#include "tensor/cpu/threads.hpp"
#include "tensor/device_kernels.hpp"
#include "tensor/error.hpp"
#include "tensor/quant/blocks.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace dtensor {

namespace {

constexpr std::string_view kFormatNames[] = {"int8", "q8_0", "q4_0", "q4_1", "nf4"};

bool is_ggml(QuantFormat format) { return format != QuantFormat::Int8 && format != QuantFormat::NF4; }

DType data_dtype(QuantFormat format) { return format == QuantFormat::Int8 ? DType::I8 : DType::U8; }

void check_geometry(QuantFormat format, int64_t rows, int64_t cols, const char* op) {
  check<ShapeError>(rows > 0 && cols > 0, op, "a {} matrix needs rows and cols > 0, got [{}, {}]",
                    quant_format_name(format), rows, cols);
  const int64_t block = quant_block_size(format);
  check<ShapeError>(cols % block == 0, op, "cols ({}) must be a multiple of {}'s block size {}", cols,
                    quant_format_name(format), block);
}

// Rows [begin, end) of src as f32, row-major (a bounded slice, so quantizing a large bf16 matrix
// never holds an f32 copy of all of it).
Tensor f32_rows(const Tensor& src, int64_t begin, int64_t end) {
  return src.narrow(0, begin, end - begin).to(DType::F32).contiguous();
}

}  // namespace

std::string_view quant_format_name(QuantFormat format) { return kFormatNames[size_t(format)]; }

QuantFormat quant_format_from_name(std::string_view name) {
  for (QuantFormat format : kAllQuantFormats) {
    if (quant_format_name(format) == name) return format;
  }
  fail<ValueError>("quant_format", "unknown quantization format '{}' (expected int8, q8_0, q4_0, q4_1 or nf4)", name);
}

int64_t quant_block_size(QuantFormat format) {
  switch (format) {
    case QuantFormat::Int8:
      return 1;
    case QuantFormat::NF4:
      return quant::kNF4Block;
    default:
      return quant::kGgmlBlock;
  }
}

int64_t quant_block_bytes(QuantFormat format) { return quant::block_bytes_of(format); }

QuantizedMatrix::QuantizedMatrix(QuantFormat format, int64_t rows, int64_t cols, Tensor data, Tensor scales)
    : format_(format), rows_(rows), cols_(cols), data_(std::move(data)), scales_(std::move(scales)) {}

QuantizedMatrix QuantizedMatrix::quantize(const Tensor& w, QuantFormat format, const QuantOptions& /*options*/) {
  constexpr const char* op = "quantize";
  check<ShapeError>(w.dim() == 2, op, "weight must be 2-D [out, in], got {}", shape_str(w.shape()));
  check<DTypeError>(w.dtype() == DType::F32 || w.dtype() == DType::BF16 || w.dtype() == DType::F16, op,
                    "weight dtype must be f32, bf16 or f16, got {}", dtype_name(w.dtype()));
  check<DeviceError>(w.device().is_cpu(), op, "weight must be on the CPU (move the quantized matrix with to())");
  const int64_t rows = w.size(0), cols = w.size(1);
  check_geometry(format, rows, cols, op);
  const int64_t bytes_per_row = quant::row_bytes(format, cols), scales_per_row = quant::row_scales(format, cols);
  Tensor data = Tensor::empty({rows, bytes_per_row}, data_dtype(format));
  Tensor scales = scales_per_row > 0 ? Tensor::empty({rows, scales_per_row}, DType::F32) : Tensor();
  auto* out = static_cast<uint8_t*>(data.data_ptr());
  float* scale_out = scales.defined() ? scales.data<float>() : nullptr;
  constexpr int64_t kSlice = 256;
  for (int64_t begin = 0; begin < rows; begin += kSlice) {
    const int64_t end = std::min(rows, begin + kSlice);
    const Tensor slice = f32_rows(w, begin, end);
    const float* x = slice.data<float>();
#pragma omp parallel for schedule(static) num_threads(cpu::kernel_threads())
    for (int64_t r = begin; r < end; ++r) {
      quant::quantize_row(format, x + (r - begin) * cols, cols, out + r * bytes_per_row,
                          scale_out ? scale_out + r * scales_per_row : nullptr);
    }
  }
  if (format == QuantFormat::Int8) scales = scales.view({rows});
  return QuantizedMatrix(format, rows, cols, std::move(data), std::move(scales));
}

QuantizedMatrix QuantizedMatrix::from_blocks(QuantFormat format, int64_t rows, int64_t cols, const Tensor& blocks) {
  constexpr const char* op = "from_blocks";
  check<ValueError>(is_ggml(format), op, "format {} has no ggml block layout (use from_parts)",
                    quant_format_name(format));
  check_geometry(format, rows, cols, op);
  check<DTypeError>(blocks.dtype() == DType::U8 || blocks.dtype() == DType::I8, op,
                    "blocks must be u8 or i8 bytes, got {}", dtype_name(blocks.dtype()));
  check<ShapeError>(blocks.is_contiguous(), op, "blocks must be contiguous");
  const int64_t bytes_per_row = quant::row_bytes(format, cols);
  check<ShapeError>(int64_t(blocks.nbytes()) == rows * bytes_per_row, op,
                    "{} bytes of {} blocks for [{}, {}] expected, got {}", rows * bytes_per_row,
                    quant_format_name(format), rows, cols, blocks.nbytes());
  Tensor data = blocks.view({rows, bytes_per_row});
  if (data.dtype() != DType::U8) {
    data = Tensor::from_blob(
        data.data_ptr(), data.shape(), DType::U8, [keep = data](void*) {}, data.device());
  }
  return QuantizedMatrix(format, rows, cols, std::move(data), Tensor());
}

QuantizedMatrix QuantizedMatrix::from_parts(QuantFormat format, int64_t rows, int64_t cols, const Tensor& data,
                                            const Tensor& scales) {
  constexpr const char* op = "from_parts";
  check_geometry(format, rows, cols, op);
  const Shape data_shape{rows, quant::row_bytes(format, cols)};
  check<DTypeError>(data.dtype() == data_dtype(format), op, "{} data must be {}, got {}", quant_format_name(format),
                    dtype_name(data_dtype(format)), dtype_name(data.dtype()));
  check<ShapeError>(data.shape() == data_shape && data.is_contiguous(), op, "data must be contiguous {}, got {}",
                    shape_str(data_shape), shape_str(data.shape()));
  if (is_ggml(format)) {
    check<ValueError>(!scales.defined(), op, "{} keeps its scales inside its blocks; scales must be undefined",
                      quant_format_name(format));
    return QuantizedMatrix(format, rows, cols, data, Tensor());
  }
  const Shape scales_shape = format == QuantFormat::Int8 ? Shape{rows} : Shape{rows, cols / quant::kNF4Block};
  check<ShapeError>(
      scales.defined() && scales.dtype() == DType::F32 && scales.shape() == scales_shape && scales.is_contiguous(), op,
      "scales must be contiguous f32 {}, got {}", shape_str(scales_shape),
      scales.defined() ? scales.to_string() : std::string("an undefined tensor"));
  check<DeviceError>(scales.device() == data.device(), op, "data and scales on different devices");
  return QuantizedMatrix(format, rows, cols, data, scales);
}

int64_t QuantizedMatrix::bytes() const {
  return int64_t(data_.nbytes()) + (scales_.defined() ? int64_t(scales_.nbytes()) : 0);
}

Tensor QuantizedMatrix::dequantize() const {
  check<ValueError>(defined(), "dequantize", "undefined quantized matrix");
  return dequantize_rows(Tensor::arange({rows_}, DType::I64).to(device()));
}

Tensor QuantizedMatrix::dequantize_rows(const Tensor& ids, DType dtype) const {
  constexpr const char* op = "dequantize_rows";
  check<ValueError>(defined(), op, "undefined quantized matrix");
  check<DTypeError>(ids.dtype() == DType::I64 || ids.dtype() == DType::I32, op, "ids must be i32 or i64, got {}",
                    dtype_name(ids.dtype()));
  check<DTypeError>(is_floating(dtype) && dtype != DType::F64, op, "output dtype must be f32, bf16 or f16, got {}",
                    dtype_name(dtype));
  check<DeviceError>(ids.device() == device(), op, "ids on {} but the matrix on {}", ids.device(), device());
  if (!device().is_cpu()) return device_kernels(device(), op).quantized_rows(*this, ids, dtype);
  const QuantizedMatrix& host = *this;
  const std::vector<int64_t> index = ids.to(DType::I64).to_vector<int64_t>();
  for (int64_t id : index) {
    check<ValueError>(id >= 0 && id < rows_, op, "id {} out of range [0, {})", id, rows_);
  }
  Shape shape = ids.shape();
  shape.push_back(cols_);
  Tensor out = Tensor::empty({int64_t(index.size()), cols_}, DType::F32);
  const auto* data = static_cast<const uint8_t*>(host.data_.data_ptr());
  const float* scales = host.scales_.defined() ? host.scales_.data<float>() : nullptr;
  const int64_t bytes_per_row = host.data_.size(1), scales_per_row = quant::row_scales(format_, cols_);
  float* y = out.data<float>();
  for (size_t i = 0; i < index.size(); ++i) {
    quant::dequantize_row(format_, data + index[i] * bytes_per_row,
                          scales ? scales + index[i] * scales_per_row : nullptr, cols_, y + int64_t(i) * cols_);
  }
  return out.to(dtype).view(shape);
}

QuantizedMatrix QuantizedMatrix::narrow_rows(int64_t offset, int64_t n) const {
  constexpr const char* op = "narrow_rows";
  check<ValueError>(defined(), op, "undefined quantized matrix");
  check<ShapeError>(offset >= 0 && n > 0 && offset + n <= rows_, op, "rows [{}, {}) outside [0, {})", offset,
                    offset + n, rows_);
  Tensor scales = scales_.defined() ? scales_.narrow(0, offset, n).clone() : Tensor();
  return QuantizedMatrix(format_, n, cols_, data_.narrow(0, offset, n).clone(), std::move(scales));
}

QuantizedMatrix QuantizedMatrix::narrow_cols(int64_t offset, int64_t n) const {
  constexpr const char* op = "narrow_cols";
  check<ValueError>(defined(), op, "undefined quantized matrix");
  check<ShapeError>(offset >= 0 && n > 0 && offset + n <= cols_, op, "cols [{}, {}) outside [0, {})", offset,
                    offset + n, cols_);
  const int64_t block = quant_block_size(format_);
  for (int64_t boundary : {offset, offset + n}) {
    check<ShapeError>(boundary % block == 0, op,
                      "column boundary {} splits a {} block of {} elements (shards must start and end at "
                      "multiples of {})",
                      boundary, quant_format_name(format_), block, block);
  }
  const int64_t byte_offset = quant::row_bytes(format_, offset), byte_count = quant::row_bytes(format_, n);
  Tensor data = data_.narrow(1, byte_offset, byte_count).clone();
  Tensor scales = scales_;
  if (format_ == QuantFormat::NF4) scales = scales_.narrow(1, offset / block, n / block).clone();
  return QuantizedMatrix(format_, rows_, n, std::move(data), std::move(scales));
}

QuantizedMatrix QuantizedMatrix::to(Device device) const {
  if (!defined() || device == data_.device()) return *this;
  Tensor scales = scales_.defined() ? scales_.to(device) : Tensor();
  return QuantizedMatrix(format_, rows_, cols_, data_.to(device), std::move(scales));
}

}  // namespace dtensor
