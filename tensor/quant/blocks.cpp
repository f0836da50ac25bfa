#include "tensor/quant/blocks.hpp"
#include "tensor/quant/nf4_codes.hpp"

#include "tensor/half.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace dtensor {

const float kNF4Codes[16] = {DTENSOR_NF4_CODES};

}  // namespace dtensor

namespace dtensor::quant {

namespace {

// bitsandbytes' decision thresholds between neighbouring codes (dQuantizeNF4), ascending.
constexpr float kNF4Thresholds[15] = {
    -0.8480964004993439f,  -0.6106329262256622f,   -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
    -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,   0.2035212516784668f,
    0.2920137718319893f,   0.3893125355243683f,    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f,
};

uint16_t to_f16(float v) { return Half(v).bits; }

float from_f16(const uint8_t* p) {
  Half h;
  std::memcpy(&h.bits, p, 2);
  return float(h);
}

void store_f16(uint8_t* p, float v) {
  const uint16_t bits = to_f16(v);
  std::memcpy(p, &bits, 2);
}

// ggml's quantize_row_q8_0_ref: d = absmax / 127, q = round(x / d).
void quantize_q8_0(const float* x, uint8_t* block) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(block, d);
  for (int j = 0; j < 32; ++j) block[2 + j] = uint8_t(int8_t(std::roundf(x[j] * id)));
}

// ggml's quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8, q = x / d + 8.5
// truncated, at most 15.
void quantize_q4_0(const float* x, uint8_t* block) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(block, d);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(int8_t(x[j] * id + 8.5f)));
    const int hi = std::min(15, int(int8_t(x[j + 16] * id + 8.5f)));
    block[2 + j] = uint8_t(lo | (hi << 4));
  }
}

// ggml's quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = (x - min) / d + 0.5 truncated.
void quantize_q4_1(const float* x, uint8_t* block) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(block, d);
  store_f16(block + 2, min);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(int8_t((x[j] - min) * id + 0.5f)));
    const int hi = std::min(15, int(int8_t((x[j + 16] - min) * id + 0.5f)));
    block[4 + j] = uint8_t(lo | (hi << 4));
  }
}

// bitsandbytes' kQuantizeBlockwise for nf4: x scaled by 1 / absmax, two codes per byte, the first
// element in the high nibble.
void quantize_nf4(const float* x, uint8_t* bytes, float* absmax) {
  float amax = 0.0f;
  for (int j = 0; j < kNF4Block; ++j) amax = std::max(amax, std::fabs(x[j]));
  *absmax = amax;
  const float inv = amax != 0.0f ? 1.0f / amax : 0.0f;
  for (int j = 0; j < kNF4Block / 2; ++j) {
    bytes[j] = uint8_t(nf4_code(x[2 * j] * inv) << 4 | nf4_code(x[2 * j + 1] * inv));
  }
}

// int8 per row: scale = absmax / 127, q = round(x * 127 / absmax).
void quantize_int8(const float* x, int64_t cols, uint8_t* data, float* scale) {
  float amax = 0.0f;
  for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, std::fabs(x[j]));
  *scale = amax / 127.0f;
  const float inv = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int64_t j = 0; j < cols; ++j) {
    data[j] = uint8_t(int8_t(std::clamp(std::nearbyintf(x[j] * inv), -127.0f, 127.0f)));
  }
}

}  // namespace

uint8_t nf4_code(float normalized) {
  return uint8_t(std::upper_bound(kNF4Thresholds, kNF4Thresholds + 15, normalized,
                                  [](float v, float threshold) { return !(v > threshold); }) -
                 kNF4Thresholds);
}

int64_t row_bytes(QuantFormat format, int64_t cols) {
  switch (format) {
    case QuantFormat::Int8:
      return cols;
    case QuantFormat::NF4:
      return cols / 2;
    default:
      return cols / kGgmlBlock * block_bytes_of(format);
  }
}

int64_t row_scales(QuantFormat format, int64_t cols) {
  if (format == QuantFormat::Int8) return 1;
  if (format == QuantFormat::NF4) return cols / kNF4Block;
  return 0;
}

void quantize_row(QuantFormat format, const float* x, int64_t cols, uint8_t* data, float* scales) {
  const int64_t block_bytes = block_bytes_of(format);
  switch (format) {
    case QuantFormat::Int8:
      return quantize_int8(x, cols, data, scales);
    case QuantFormat::NF4:
      for (int64_t b = 0; b < cols / kNF4Block; ++b) quantize_nf4(x + b * kNF4Block, data + b * 32, scales + b);
      return;
    case QuantFormat::Q8_0:
      for (int64_t b = 0; b < cols / kGgmlBlock; ++b) quantize_q8_0(x + b * kGgmlBlock, data + b * block_bytes);
      return;
    case QuantFormat::Q4_0:
      for (int64_t b = 0; b < cols / kGgmlBlock; ++b) quantize_q4_0(x + b * kGgmlBlock, data + b * block_bytes);
      return;
    case QuantFormat::Q4_1:
      for (int64_t b = 0; b < cols / kGgmlBlock; ++b) quantize_q4_1(x + b * kGgmlBlock, data + b * block_bytes);
      return;
  }
}

void dequantize_row(QuantFormat format, const uint8_t* data, const float* scales, int64_t cols, float* out) {
  const int64_t block_bytes = block_bytes_of(format);
  switch (format) {
    case QuantFormat::Int8:
      for (int64_t j = 0; j < cols; ++j) out[j] = float(int8_t(data[j])) * scales[0];
      return;
    case QuantFormat::NF4:
      for (int64_t j = 0; j < cols / 2; ++j) {
        const float absmax = scales[2 * j / kNF4Block];
        out[2 * j] = kNF4Codes[data[j] >> 4] * absmax;
        out[2 * j + 1] = kNF4Codes[data[j] & 15] * absmax;
      }
      return;
    default:
      break;
  }
  for (int64_t b = 0; b < cols / kGgmlBlock; ++b) {
    const uint8_t* block = data + b * block_bytes;
    float* y = out + b * kGgmlBlock;
    const float d = from_f16(block);
    if (format == QuantFormat::Q8_0) {
      for (int j = 0; j < 32; ++j) y[j] = float(int8_t(block[2 + j])) * d;
    } else if (format == QuantFormat::Q4_0) {
      for (int j = 0; j < 16; ++j) {
        y[j] = float((block[2 + j] & 15) - 8) * d;
        y[j + 16] = float((block[2 + j] >> 4) - 8) * d;
      }
    } else {
      const float m = from_f16(block + 2);
      for (int j = 0; j < 16; ++j) {
        y[j] = float(block[4 + j] & 15) * d + m;
        y[j + 16] = float(block[4 + j] >> 4) * d + m;
      }
    }
  }
}

}  // namespace dtensor::quant
