#include "tensor/error.hpp"
#include "tensor/quant/kernels.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

namespace dtensor::quant {

namespace {

// -1: no override; otherwise the Isa's value.
std::atomic<int> isa_override{-1};

Isa detect_host_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("f16c")) {
    return Isa::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Isa::Avx2;
  }
#endif
  return Isa::Scalar;
}

Isa capped(Isa isa) { return uint8_t(isa) <= uint8_t(host_isa()) ? isa : host_isa(); }

Isa isa_from_env() {
  const char* text = std::getenv("DTENSOR_QUANT_ISA");
  if (text == nullptr || *text == '\0') return host_isa();
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (isa_name(isa) == text) return capped(isa);
  }
  fail<ValueError>("quantized_linear", "DTENSOR_QUANT_ISA='{}' must be scalar, avx2 or avx512", text);
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return "scalar";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "?";
}

Isa host_isa() {
  static const Isa isa = detect_host_isa();
  return isa;
}

Isa active_isa() {
  const int forced = isa_override.load(std::memory_order_relaxed);
  if (forced >= 0) return capped(Isa(forced));
  static const Isa from_env = isa_from_env();
  return from_env;
}

void set_isa_override(std::optional<Isa> isa) { isa_override.store(isa ? int(*isa) : -1); }

RowsKernel rows_kernel(Isa isa, QuantFormat format) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::Avx512:
      return avx512_rows_kernel(format);
    case Isa::Avx2:
      return avx2_rows_kernel(format);
#endif
    default:
      return scalar_rows_kernel(format);
  }
}

Int8RowsKernel int8_rows_kernel(Isa isa, QuantFormat format) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::Avx512:
      return avx512_int8_rows_kernel(format);
    case Isa::Avx2:
      return avx2_int8_rows_kernel(format);
#endif
    default:
      return scalar_int8_rows_kernel(format);
  }
}

void quantize_activations_q8(const float* x, int64_t cols, int8_t* q, float* scale, float* sums, int32_t* q_sums) {
  for (int64_t b = 0; b < cols / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f, inv = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int v = int(std::nearbyintf(xb[j] * inv));
      q[b * 32 + j] = int8_t(v);
      sum += v;
    }
    scale[b] = d;
    sums[b] = d * float(sum);
    q_sums[b] = sum;
  }
}

Int8DotKernel int8_dot_kernel(Isa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::Avx512:
      return avx512_int8_dot;
    case Isa::Avx2:
      return avx2_int8_dot;
#endif
    default:
      return scalar_int8_dot;
  }
}

void prepare_nf4_activations(const float* x, int64_t cols, float* out) {
  for (int64_t chunk = 0; chunk < cols; chunk += 32) {
    for (int j = 0; j < 16; ++j) {
      out[chunk + j] = x[chunk + 2 * j];
      out[chunk + 16 + j] = x[chunk + 2 * j + 1];
    }
  }
}

}  // namespace dtensor::quant
