// The portable kernels: the fallback on hosts without AVX2 and the yardstick the SIMD ones are
// tested against.
#include "tensor/half.hpp"
#include "tensor/quant/blocks.hpp"
#include "tensor/quant/kernels.hpp"

#include <cstring>

namespace dtensor::quant {

namespace {

float f16_at(const uint8_t* p) {
  Half h;
  std::memcpy(&h.bits, p, 2);
  return float(h);
}

// sum over one 32-element block of q(j) * x[j], q the block's raw quantized values.
float ggml_block_dot(QuantFormat format, const uint8_t* qs, const float* x) {
  float sum = 0.0f;
  if (format == QuantFormat::Q8_0) {
    for (int j = 0; j < 32; ++j) sum += float(int8_t(qs[j])) * x[j];
  } else {
    for (int j = 0; j < 16; ++j) sum += float(qs[j] & 15) * x[j] + float(qs[j] >> 4) * x[j + 16];
  }
  return sum;
}

float row_dot(const WeightRows& w, const uint8_t* row, int64_t r, const float* x, const float* sums) {
  const int64_t cols = w.cols;
  float total = 0.0f;
  switch (w.format) {
    case QuantFormat::Int8:
      for (int64_t c = 0; c < cols; ++c) total += float(int8_t(row[c])) * x[c];
      return total * w.scales[r];
    case QuantFormat::NF4:
      for (int64_t chunk = 0; chunk < cols / 32; ++chunk) {
        const uint8_t* bytes = row + chunk * 16;
        const float* xc = x + chunk * 32;  // evens then odds (prepare_nf4_activations)
        float sum = 0.0f;
        for (int j = 0; j < 16; ++j) sum += kNF4Codes[bytes[j] >> 4] * xc[j] + kNF4Codes[bytes[j] & 15] * xc[16 + j];
        total += sum * w.scales[r * (cols / kNF4Block) + chunk / 2];
      }
      return total;
    default:
      break;
  }
  const int64_t block_bytes = quant_block_bytes(w.format);
  for (int64_t b = 0; b < cols / kGgmlBlock; ++b) {
    const uint8_t* block = row + b * block_bytes;
    const float d = f16_at(block);
    if (w.format == QuantFormat::Q8_0) {
      total += d * ggml_block_dot(w.format, block + 2, x + b * kGgmlBlock);
    } else if (w.format == QuantFormat::Q4_0) {
      total += d * (ggml_block_dot(w.format, block + 2, x + b * kGgmlBlock) - 8.0f * sums[b]);
    } else {
      total += d * ggml_block_dot(w.format, block + 4, x + b * kGgmlBlock) + f16_at(block + 2) * sums[b];
    }
  }
  return total;
}

void rows_scalar(const WeightRows& w, const Activations& a, int64_t row_begin, int64_t row_end, float* out,
                 int64_t out_stride) {
  const int64_t blocks = w.cols / kGgmlBlock;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = w.data + r * w.row_stride;
    for (int64_t i = 0; i < a.m; ++i) {
      const float* sums = a.block_sums ? a.block_sums + i * blocks : nullptr;
      out[i * out_stride + r] = row_dot(w, row, r, a.x + i * w.cols, sums);
    }
  }
}

void int8_rows_scalar(const WeightRows& w, const Int8Activations& a, int64_t row_begin, int64_t row_end, float* out,
                      int64_t out_stride) {
  const int64_t blocks = w.cols / kGgmlBlock, block_bytes = quant_block_bytes(w.format);
  const int64_t qs_offset = w.format == QuantFormat::Q4_0 ? 2 : 4;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = w.data + r * w.row_stride;
    for (int64_t i = 0; i < a.m; ++i) {
      float total = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = row + b * block_bytes;
        const int8_t* xq = a.q + i * w.cols + b * kGgmlBlock;
        int32_t dot = 0;
        if (w.format == QuantFormat::Q8_0) {
          for (int j = 0; j < 32; ++j) dot += int8_t(block[2 + j]) * xq[j];
        } else {
          for (int j = 0; j < 16; ++j) {
            dot += (block[qs_offset + j] & 15) * xq[j] + (block[qs_offset + j] >> 4) * xq[j + 16];
          }
        }
        const float d = f16_at(block);
        const float offset = w.format == QuantFormat::Q4_0   ? -8.0f * d
                             : w.format == QuantFormat::Q4_1 ? f16_at(block + 2)
                                                             : 0.0f;
        total += d * a.scale[i * blocks + b] * float(dot) + offset * a.sums[i * blocks + b];
      }
      out[i * out_stride + r] = total;
    }
  }
}

}  // namespace

Int8RowsKernel scalar_int8_rows_kernel(QuantFormat /*format*/) { return int8_rows_scalar; }

RowsKernel scalar_rows_kernel(QuantFormat /*format*/) { return rows_scalar; }

void scalar_int8_dot(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols, int64_t row_begin,
                     int64_t row_end, int32_t* acc, int64_t acc_stride) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    for (int64_t i = 0; i < m; ++i) {
      int32_t sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += int32_t(xq[i * cols + c]) * int32_t(wq[r * w_stride + c]);
      acc[i * acc_stride + r] = sum;
    }
  }
}

}  // namespace dtensor::quant
