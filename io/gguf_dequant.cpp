// ggml's tensor types: names, block sizes, and the decoding of the readable ones, following the
// byte layouts of ggml-common.h and the reference dequantize_row_* of ggml-quants.c.
#include "io/gguf.hpp"

#include "tensor/half.hpp"
#include "tensor/quant/blocks.hpp"

#include <cstring>

namespace dtensor::io {

namespace {

struct TypeEntry {
  uint32_t id;
  std::string_view name;
  int64_t block_size;
  int64_t block_bytes;
};
// Every id ggml defines (the gguf PyPI package's GGML_QUANT_SIZES), readable or not.
constexpr TypeEntry kTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},
    {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const TypeEntry* find_type(GgmlType type) {
  for (const TypeEntry& entry : kTypes) {
    if (entry.id == uint32_t(type)) return &entry;
  }
  return nullptr;
}

const TypeEntry& known_type(GgmlType type) {
  const TypeEntry* entry = find_type(type);
  check<DTypeError>(entry != nullptr, "gguf", "ggml type {} is unknown", uint32_t(type));
  return *entry;
}

float f16(const std::byte* p) {
  Half half;
  std::memcpy(&half.bits, p, 2);
  return float(half);
}

constexpr int64_t kQK = 256;  // elements per K-quant super-block

// Q8_0 / Q4_0 / Q4_1: the quantized kernels' formats (same bytes), decoded by their reference.
void ggml_blocks(QuantFormat format, const std::byte* src, int64_t blocks, float* dst) {
  quant::dequantize_row(format, reinterpret_cast<const uint8_t*>(src), nullptr, blocks * quant::kGgmlBlock, dst);
}

// The 6-bit scale and min of sub-block j packed in the 12 scale bytes of Q4_K / Q5_K.
void scale_min_k4(int j, const uint8_t* q, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    min = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K (qh == nullptr) and Q5_K: d, dmin, 12 scale bytes, [32 high bits,] 128 nibble bytes.
void dequantize_k4_k5(const std::byte* src, int64_t blocks, float* dst, bool five_bit) {
  const int64_t block_bytes = five_bit ? 176 : 144;
  for (int64_t b = 0; b < blocks; ++b, src += block_bytes) {
    const float d = f16(src), dmin = f16(src + 2);
    const auto* scales = reinterpret_cast<const uint8_t*>(src + 4);
    const uint8_t* qh = five_bit ? scales + 12 : nullptr;
    const uint8_t* ql = scales + 12 + (five_bit ? 32 : 0);
    uint8_t low_bit = 1, high_bit = 2;
    for (int j = 0, is = 0; j < kQK; j += 64, is += 2, ql += 32) {
      uint8_t sc, m;
      scale_min_k4(is, scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) {
        const int extra = qh != nullptr && (qh[l] & low_bit) ? 16 : 0;
        *dst++ = d1 * float((ql[l] & 0xF) + extra) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int extra = qh != nullptr && (qh[l] & high_bit) ? 16 : 0;
        *dst++ = d2 * float((ql[l] >> 4) + extra) - m2;
      }
      low_bit = uint8_t(low_bit << 2);
      high_bit = uint8_t(high_bit << 2);
    }
  }
}

// Q6_K: 128 low-nibble bytes, 64 high-2-bit bytes, 16 int8 scales, then d.
void dequantize_q6_k(const std::byte* src, int64_t blocks, float* dst) {
  for (int64_t b = 0; b < blocks; ++b, src += 210) {
    const float d = f16(src + 208);
    const auto* ql = reinterpret_cast<const uint8_t*>(src);
    const uint8_t* qh = ql + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(src + 192);
    for (int n = 0; n < kQK; n += 128, dst += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        dst[l] = d * float(sc[is]) * float(q1);
        dst[l + 32] = d * float(sc[is + 2]) * float(q2);
        dst[l + 64] = d * float(sc[is + 4]) * float(q3);
        dst[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

}  // namespace

std::string ggml_type_name(GgmlType type) {
  const TypeEntry* entry = find_type(type);
  return entry != nullptr ? std::string(entry->name) : fmt::format("unknown type {}", uint32_t(type));
}

bool ggml_type_known(GgmlType type) { return find_type(type) != nullptr; }

bool ggml_type_readable(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

int64_t ggml_block_size(GgmlType type) { return known_type(type).block_size; }
int64_t ggml_block_bytes(GgmlType type) { return known_type(type).block_bytes; }

void dequantize_blocks(GgmlType type, const std::byte* src, int64_t blocks, float* dst) {
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(blocks) * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < blocks; ++i) dst[i] = f16(src + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < blocks; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = std::bit_cast<float>(uint32_t(bits) << 16);
      }
      return;
    case GgmlType::Q8_0:
      return ggml_blocks(QuantFormat::Q8_0, src, blocks, dst);
    case GgmlType::Q4_0:
      return ggml_blocks(QuantFormat::Q4_0, src, blocks, dst);
    case GgmlType::Q4_1:
      return ggml_blocks(QuantFormat::Q4_1, src, blocks, dst);
    case GgmlType::Q4_K:
      dequantize_k4_k5(src, blocks, dst, false);
      return;
    case GgmlType::Q5_K:
      dequantize_k4_k5(src, blocks, dst, true);
      return;
    case GgmlType::Q6_K:
      dequantize_q6_k(src, blocks, dst);
      return;
    default:
      break;
  }
  fail<DTypeError>("gguf", "cannot dequantize ggml type {} (readable: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q5_K Q6_K)",
                   ggml_type_name(type));
}

}  // namespace dtensor::io
