#include "tensor/cpu/gemv.hpp"

#include "tensor/cpu/threads.hpp"
#include "tensor/half.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <type_traits>

namespace dtensor::cpu {

namespace {

#if defined(__x86_64__)
#define DTENSOR_GEMV_TARGET __attribute__((target("avx2,fma,f16c")))

// Eight consecutive weights widened to f32.
template <typename W>
DTENSOR_GEMV_TARGET inline __m256 load8(const W* p) {
  if constexpr (std::is_same_v<W, float>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::is_same_v<W, BFloat16>) {  // bf16 is the high half of an f32
    const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

DTENSOR_GEMV_TARGET inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

// The dot product of x (f32) with one weight row of k elements: four independent accumulators
// over 32 elements per step, so loads stay in flight while the FMAs of earlier steps finish.
template <typename W>
DTENSOR_GEMV_TARGET float dot_row(const float* x, const W* w, int64_t k) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    a0 = _mm256_fmadd_ps(load8(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(load8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(load8(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(load8(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(load8(w + i), _mm256_loadu_ps(x + i), a0);
  float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < k; ++i) sum += x[i] * float(w[i]);
  return sum;
}

template <typename W, typename O>
DTENSOR_GEMV_TARGET void gemv_rows(const float* x, const W* w, int64_t ld, int64_t k, const O* bias, O* out,
                                   int64_t out_stride, int64_t n) {
  // Static chunks: each thread streams one contiguous band of rows. Small products stay on one.
  const bool parallel = n * k >= (int64_t(1) << 16);
#pragma omp parallel for schedule(static) num_threads(kernel_threads()) if (parallel)
  for (int64_t r = 0; r < n; ++r) {
    const float sum = dot_row(x, w + r * ld, k);
    out[r * out_stride] = O(bias ? sum + float(bias[r]) : sum);
  }
}

// out[c] = sum_r x[r] * w[r, c] over w's rows (unit column stride, rows ld apart): each row is
// read once, scaled and added to f32 accumulators of the columns, 8 at a time.
template <typename W, typename O>
DTENSOR_GEMV_TARGET void axpy_rows(const float* x, const W* w, int64_t ld, int64_t k, const O* bias, O* out,
                                   int64_t out_stride, int64_t n) {
  constexpr int64_t kBlock = 256;  // columns per thread's block: 1 KiB of accumulators
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const bool parallel = n * k >= (int64_t(1) << 16);
#pragma omp parallel for schedule(static) num_threads(kernel_threads()) if (parallel)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t begin = block * kBlock, width = std::min(kBlock, n - begin);
    alignas(32) float acc[kBlock] = {};
    for (int64_t r = 0; r < k; ++r) {
      const W* row = w + r * ld + begin;
      const __m256 scale = _mm256_set1_ps(x[r]);
      int64_t c = 0;
      for (; c + 8 <= width; c += 8) {
        _mm256_store_ps(acc + c, _mm256_fmadd_ps(load8(row + c), scale, _mm256_load_ps(acc + c)));
      }
      for (; c < width; ++c) acc[c] += x[r] * float(row[c]);
    }
    for (int64_t c = 0; c < width; ++c) {
      const int64_t col = begin + c;
      out[col * out_stride] = O(bias ? acc[c] + float(bias[col]) : acc[c]);
    }
  }
}

bool host_has_kernel() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

}  // namespace

bool gemv(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
#if defined(__x86_64__)
  static const bool supported = host_has_kernel();
  const bool shapes = a.dim() == 2 && b.dim() == 2 && out.dim() == 2 && a.size(0) == 1 && out.size(0) == 1;
  if (!supported || !shapes || a.dtype() != b.dtype() || !is_floating(a.dtype()) || a.dtype() == DType::F64) {
    return false;
  }
  const int64_t k = b.size(0), n = b.size(1);
  // b's rows (a transposed weight: dot products) or b's columns (axpy) must be unit-stride.
  const bool dots = k == 1 || b.strides()[0] == 1, axpys = n == 1 || b.strides()[1] == 1;
  if (k == 0 || n == 0 || !(dots || axpys)) return false;
  if (out.dtype() != DType::F32 && out.dtype() != a.dtype()) return false;
  if (bias.defined() && (bias.dtype() != out.dtype() || bias.dim() != 1 || bias.strides()[0] != 1)) return false;
  const Tensor x = a.to(DType::F32).contiguous();  // no copy for a contiguous f32 row
  const int64_t out_stride = out.strides()[1];
  const auto run = [&]<typename W, typename O>() {
    const W* w = static_cast<const W*>(b.data_ptr());
    const O* bias_data = bias.defined() ? static_cast<const O*>(bias.data_ptr()) : nullptr;
    O* out_data = static_cast<O*>(out.data_ptr());
    if (dots) {
      gemv_rows<W, O>(x.data<float>(), w, n > 1 ? b.strides()[1] : k, k, bias_data, out_data, out_stride, n);
    } else {
      axpy_rows<W, O>(x.data<float>(), w, k > 1 ? b.strides()[0] : n, k, bias_data, out_data, out_stride, n);
    }
  };
  const bool f32_out = out.dtype() == DType::F32;
  switch (a.dtype()) {
    case DType::F32:
      run.template operator()<float, float>();
      break;
    case DType::BF16:
      f32_out ? run.template operator()<BFloat16, float>() : run.template operator()<BFloat16, BFloat16>();
      break;
    default:
      f32_out ? run.template operator()<Half, float>() : run.template operator()<Half, Half>();
      break;
  }
  return true;
#else
  (void)a, (void)b, (void)bias, (void)out;
  return false;
#endif
}

}  // namespace dtensor::cpu
