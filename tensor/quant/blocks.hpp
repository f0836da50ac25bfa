// The reference (scalar) quantization and dequantization of one row in each format, and the byte
// geometry of a row (internal; not installed). The SIMD kernels (kernels_*.cpp) and the CUDA
// kernels read the same bytes.
#pragma once

#include "tensor/quant/quantized.hpp"

#include <cstdint>

namespace dtensor::quant {

inline constexpr int64_t kGgmlBlock = 32;  // elements of a q8_0 / q4_0 / q4_1 block
inline constexpr int64_t kNF4Block = 64;   // elements sharing one nf4 absmax

// quant_block_bytes as a constant for the kernels' inner loops.
constexpr int64_t block_bytes_of(QuantFormat format) {
  switch (format) {
    case QuantFormat::Q8_0:
      return 34;
    case QuantFormat::Q4_0:
      return 18;
    case QuantFormat::Q4_1:
      return 20;
    case QuantFormat::NF4:
      return 32;
    default:
      return 1;
  }
}

// Packed bytes of one row of cols elements (scales held apart excluded).
int64_t row_bytes(QuantFormat format, int64_t cols);
// Scales held apart per row: 1 for int8, cols / 64 for nf4, 0 for the ggml formats.
int64_t row_scales(QuantFormat format, int64_t cols);

// Quantizes x[0, cols) into the row's bytes and its scales (see row_scales).
void quantize_row(QuantFormat format, const float* x, int64_t cols, uint8_t* data, float* scales);
// Writes the row's cols values into out.
void dequantize_row(QuantFormat format, const uint8_t* data, const float* scales, int64_t cols, float* out);

// The nf4 code of a value already divided by its block's absmax (bitsandbytes' dQuantizeNF4:
// the nearest code, ties to the lower one).
uint8_t nf4_code(float normalized);

}  // namespace dtensor::quant
