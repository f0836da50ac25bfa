// AVX-512 kernels: 16 f32 lanes, each 32-element block unpacked into two vectors. Compiled for
// AVX-512 by function attributes only and reached through the run-time dispatch (dispatch.cpp);
// GCC 12 miscompiles ordinary C++ compiled for AVX-512, so these functions hold intrinsics and
// plain loops over raw pointers only.
#include "tensor/quant/blocks.hpp"
#include "tensor/quant/kernels.hpp"

// GCC 12's AVX-512 intrinsics (cvtepu8_epi32, reduce_add, ...) start from _mm512_undefined_*()
// values, which -Wmaybe-uninitialized reports at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#if defined(__x86_64__)
#include <immintrin.h>

#define DTENSOR_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define DTENSOR_QUANT_TARGET DTENSOR_AVX512
#define DTENSOR_QUANT_F32 __m512
#include "tensor/quant/kernels_x86.hpp"
#endif

namespace dtensor::quant {

#if defined(__x86_64__)

namespace {

// One 32-element chunk of a row: q0 multiplies x[0, 16), q1 x[16, 32) of the chunk (nf4: of the
// prepared x), both times scale; offset times the chunk's sum of x is added on top.
struct Chunk {
  __m512 q0, q1;
  float scale, offset;
};

template <QuantFormat F>
DTENSOR_AVX512 inline Chunk decode(const WeightRows& w, const uint8_t* row, int64_t r, int64_t chunk) {
  Chunk out;
  if constexpr (F == QuantFormat::Q8_0 || F == QuantFormat::Int8) {
    const uint8_t* qs = F == QuantFormat::Q8_0 ? row + chunk * 34 + 2 : row + chunk * 32;
    out.q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs))));
    out.q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16))));
    out.scale = F == QuantFormat::Q8_0 ? f16_at(row + chunk * 34) : 1.0f;
    out.offset = 0.0f;
  } else if constexpr (F == QuantFormat::Q4_0 || F == QuantFormat::Q4_1) {
    const uint8_t* block = row + chunk * block_bytes_of(F);
    const uint8_t* qs = block + (F == QuantFormat::Q4_0 ? 2 : 4);
    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
    out.q0 = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(15)));
    out.q1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
    out.scale = f16_at(block);
    out.offset = F == QuantFormat::Q4_0 ? -8.0f * out.scale : f16_at(block + 2);
  } else {  // nf4: the high nibbles are the even elements, the low ones the odd
    const __m512 codes = _mm512_loadu_ps(kNF4Codes);
    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + chunk * 16)));
    out.q0 = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), codes);
    out.q1 = _mm512_permutexvar_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(15)), codes);
    out.scale = w.scales[r * (w.cols / kNF4Block) + chunk / 2];
    out.offset = 0.0f;
  }
  return out;
}

DTENSOR_AVX512 inline __m512 f32_zero() { return _mm512_setzero_ps(); }
DTENSOR_AVX512 inline __m512 f32_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
DTENSOR_AVX512 inline float f32_sum(__m512 v) { return _mm512_reduce_add_ps(v); }

// Chunk c of one row against M rows of x, into accumulator chain k.
template <QuantFormat F, int M, int C>
DTENSOR_AVX512 inline void chunk_step(const WeightRows& w, const uint8_t* row, int64_t r, int64_t c,
                                      const float* const* x, const float* const* sums, int k, __m512 (&acc)[M][C],
                                      float (&offset)[M][C]) {
  const Chunk q = decode<F>(w, row, r, c);
  const __m512 scale = _mm512_set1_ps(q.scale);
  for (int i = 0; i < M; ++i) {
    const float* xc = x[i] + c * 32;
    const __m512 t = _mm512_fmadd_ps(q.q1, _mm512_loadu_ps(xc + 16), _mm512_mul_ps(q.q0, _mm512_loadu_ps(xc)));
    acc[i][k] = F == QuantFormat::Int8 ? _mm512_add_ps(acc[i][k], t) : _mm512_fmadd_ps(t, scale, acc[i][k]);
    if constexpr (F == QuantFormat::Q4_0 || F == QuantFormat::Q4_1) offset[i][k] += q.offset * sums[i][c];
  }
}

DTENSOR_AVX512 inline __m256i u8_i8_dot(__m256i init, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(init, u, s); }

}  // namespace

Int8RowsKernel avx512_int8_rows_kernel(QuantFormat format) { return int8_rows_kernel_of(format); }
RowsKernel avx512_rows_kernel(QuantFormat format) { return rows_kernel_of(format); }

DTENSOR_AVX512 void avx512_int8_dot(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols,
                                    int64_t row_begin, int64_t row_end, int32_t* acc, int64_t acc_stride) {
  const int64_t vector_cols = cols / 32 * 32;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int8_t* w = wq + r * w_stride;
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* x = xq + i * cols;
      __m512i sum = _mm512_setzero_si512();
      for (int64_t c = 0; c < vector_cols; c += 32) {
        const __m512i xv = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + c)));
        const __m512i wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c)));
        sum = _mm512_add_epi32(sum, _mm512_madd_epi16(xv, wv));
      }
      int32_t total = _mm512_reduce_add_epi32(sum);
      for (int64_t c = vector_cols; c < cols; ++c) total += int32_t(x[c]) * int32_t(w[c]);
      acc[i * acc_stride + r] = total;
    }
  }
}

#endif

}  // namespace dtensor::quant
