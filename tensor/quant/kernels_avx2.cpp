// AVX2 + FMA + F16C kernels: 8 f32 lanes, each 32-element block unpacked into four vectors.
// The library's baseline (x86-64-v3) already includes these, but the attributes keep the file
// correct under a lower -Dcpu_baseline; dispatch.cpp calls it only on hosts that have them.
#include "tensor/quant/blocks.hpp"
#include "tensor/quant/kernels.hpp"

#if defined(__x86_64__)
#include <immintrin.h>

#define DTENSOR_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DTENSOR_QUANT_TARGET DTENSOR_AVX2
#define DTENSOR_QUANT_F32 __m256
#include "tensor/quant/kernels_x86.hpp"
#endif

namespace dtensor::quant {

#if defined(__x86_64__)

namespace {

DTENSOR_AVX2 inline __m256 widen_u8(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }
DTENSOR_AVX2 inline __m256 widen_i8(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)); }

// The nf4 code values of eight nibbles (one per 32-bit lane): two 8-entry permutes, picked by bit 3.
DTENSOR_AVX2 inline __m256 nf4_lookup(__m128i nibbles) {
  const __m256i index = _mm256_cvtepu8_epi32(nibbles);
  const __m256 low = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kNF4Codes), index);
  const __m256 high = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kNF4Codes + 8), index);
  return _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(index, 28)));
}

// One 32-element chunk: q[k] multiplies x[8k, 8k + 8) of the chunk (nf4: of the prepared x).
struct Chunk {
  __m256 q[4];
  float scale, offset;
};

template <QuantFormat F>
DTENSOR_AVX2 inline Chunk decode(const WeightRows& w, const uint8_t* row, int64_t r, int64_t chunk) {
  Chunk out;
  out.offset = 0.0f;
  if constexpr (F == QuantFormat::Q8_0 || F == QuantFormat::Int8) {
    const uint8_t* qs = F == QuantFormat::Q8_0 ? row + chunk * 34 + 2 : row + chunk * 32;
    for (int k = 0; k < 4; ++k) out.q[k] = widen_i8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * k)));
    out.scale = F == QuantFormat::Q8_0 ? f16_at(row + chunk * 34) : 1.0f;
  } else {
    const uint8_t* qs =
        F == QuantFormat::NF4 ? row + chunk * 16 : row + chunk * block_bytes_of(F) + (F == QuantFormat::Q4_0 ? 2 : 4);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(15);
    const __m128i low = _mm_and_si128(bytes, mask), high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    if constexpr (F == QuantFormat::NF4) {  // high nibbles: even elements, first in the prepared x
      out.q[0] = nf4_lookup(high);
      out.q[1] = nf4_lookup(_mm_srli_si128(high, 8));
      out.q[2] = nf4_lookup(low);
      out.q[3] = nf4_lookup(_mm_srli_si128(low, 8));
      out.scale = w.scales[r * (w.cols / kNF4Block) + chunk / 2];
    } else {  // ggml: low nibbles are elements 0..15, high ones 16..31
      out.q[0] = widen_u8(low);
      out.q[1] = widen_u8(_mm_srli_si128(low, 8));
      out.q[2] = widen_u8(high);
      out.q[3] = widen_u8(_mm_srli_si128(high, 8));
      const uint8_t* block = row + chunk * block_bytes_of(F);
      out.scale = f16_at(block);
      out.offset = F == QuantFormat::Q4_0 ? -8.0f * out.scale : f16_at(block + 2);
    }
  }
  return out;
}

DTENSOR_AVX2 inline __m256 f32_zero() { return _mm256_setzero_ps(); }
DTENSOR_AVX2 inline __m256 f32_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
DTENSOR_AVX2 inline float f32_sum(__m256 v) { return horizontal_sum(v); }

// Chunk c of one row against M rows of x, into accumulator chain k.
template <QuantFormat F, int M, int C>
DTENSOR_AVX2 inline void chunk_step(const WeightRows& w, const uint8_t* row, int64_t r, int64_t c,
                                    const float* const* x, const float* const* sums, int k, __m256 (&acc)[M][C],
                                    float (&offset)[M][C]) {
  const Chunk q = decode<F>(w, row, r, c);
  const __m256 scale = _mm256_set1_ps(q.scale);
  for (int i = 0; i < M; ++i) {
    const float* xc = x[i] + c * 32;
    __m256 t = _mm256_mul_ps(q.q[0], _mm256_loadu_ps(xc));
    t = _mm256_fmadd_ps(q.q[1], _mm256_loadu_ps(xc + 8), t);
    t = _mm256_fmadd_ps(q.q[2], _mm256_loadu_ps(xc + 16), t);
    t = _mm256_fmadd_ps(q.q[3], _mm256_loadu_ps(xc + 24), t);
    acc[i][k] = F == QuantFormat::Int8 ? _mm256_add_ps(acc[i][k], t) : _mm256_fmadd_ps(t, scale, acc[i][k]);
    if constexpr (F == QuantFormat::Q4_0 || F == QuantFormat::Q4_1) offset[i][k] += q.offset * sums[i][c];
  }
}

// vpmaddubsw's int16 pair sums cannot saturate here: u <= 128 (|w|, or a nibble) and |s| <= 127 (x
// rounded to q8_0), so a pair is at most 32512.
DTENSOR_AVX2 inline __m256i u8_i8_dot(__m256i init, __m256i u, __m256i s) {
  return _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

}  // namespace

Int8RowsKernel avx2_int8_rows_kernel(QuantFormat format) { return int8_rows_kernel_of(format); }
RowsKernel avx2_rows_kernel(QuantFormat format) { return rows_kernel_of(format); }

DTENSOR_AVX2 void avx2_int8_dot(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols,
                                int64_t row_begin, int64_t row_end, int32_t* acc, int64_t acc_stride) {
  const int64_t vector_cols = cols / 16 * 16;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int8_t* w = wq + r * w_stride;
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* x = xq + i * cols;
      __m256i sum = _mm256_setzero_si256();
      for (int64_t c = 0; c < vector_cols; c += 16) {
        const __m256i xv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + c)));
        const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c)));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(xv, wv));
      }
      __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s = _mm_hadd_epi32(s, s);
      s = _mm_hadd_epi32(s, s);
      int32_t total = _mm_cvtsi128_si32(s);
      for (int64_t c = vector_cols; c < cols; ++c) total += int32_t(x[c]) * int32_t(w[c]);
      acc[i * acc_stride + r] = total;
    }
  }
}

#endif

}  // namespace dtensor::quant
