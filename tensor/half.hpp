// 16-bit floating point storage types. Arithmetic happens in float: every kernel converts on
// load and rounds (to nearest even) on store, as PyTorch's CPU kernels do.
#pragma once

#include <bit>
#include <cstdint>

namespace dtensor {

struct BFloat16 {
  uint16_t bits = 0;

  BFloat16() = default;
  BFloat16(float value) : bits(round(value)) {}  // NOLINT: implicit like a builtin float type
  operator float() const { return std::bit_cast<float>(uint32_t(bits) << 16); }

 private:
  static uint16_t round(float value) {
    uint32_t u = std::bit_cast<uint32_t>(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                         // nearest even
    return uint16_t(u >> 16);
  }
};

struct Half {
  uint16_t bits = 0;

  Half() = default;
  Half(float value) : bits(from_float(value)) {}  // NOLINT: implicit like a builtin float type
  operator float() const { return to_float(bits); }

 private:
  static uint16_t from_float(float value);
  static float to_float(uint16_t h);
};

inline float Half::to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp == 0) {
    // Zero or subnormal: value = mant * 2^-24.
    float magnitude = float(mant) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t Half::from_float(float value) {
  uint32_t u = std::bit_cast<uint32_t>(value);
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00;   // nan
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // overflow to inf (rounds past 65504)
  if (abs < 0x38800000u) {                       // subnormal or zero in half
    // Let the FPU round: adding 0.5 shifts the mantissa bits we keep into the low bits.
    float shifted = std::bit_cast<float>(abs) + 0.5f;
    return sign | uint16_t(std::bit_cast<uint32_t>(shifted) - 0x3f000000u);
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u) - (112u << 23);  // nearest even, rebias
  return sign | uint16_t(rounded >> 13);
}

}  // namespace dtensor
