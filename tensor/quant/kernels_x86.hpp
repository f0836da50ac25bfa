// The code the AVX2 and AVX-512 kernels share: the same source compiled once per instruction set.
// Included by kernels_avx2.cpp and kernels_avx512.cpp only. Each first defines DTENSOR_QUANT_TARGET,
// its target attribute, and DTENSOR_QUANT_F32, its f32 vector type. Every function here carries the
// attribute: a function inlines intrinsics only under a target that includes theirs, and the AVX-512
// code must stay inside attributed functions (GCC 12 miscompiles ordinary C++ compiled for AVX-512,
// so no file is compiled with -mavx512*). Each file then defines the pieces that differ, declared
// below: block_dot (vpmaddubsw on AVX2, vpdpbusd on AVX-512), chunk_step (four 8-lane or two 16-lane
// vectors per chunk) and the f32 vector's operations.
//
// Everything is in an anonymous namespace on purpose: each file's instantiations keep internal
// linkage, so the linker never merges an AVX-512 copy with the AVX2 one of the same name.
#pragma once

#if !defined(DTENSOR_QUANT_TARGET) || !defined(DTENSOR_QUANT_F32)
#error "kernels_x86.hpp needs DTENSOR_QUANT_TARGET and DTENSOR_QUANT_F32 (the including file's target and vector)"
#endif

#include "tensor/quant/blocks.hpp"
#include "tensor/quant/kernels.hpp"

#include <immintrin.h>

#include <cstring>

namespace dtensor::quant {
namespace {

// init + the products of 32 unsigned bytes u with 32 signed bytes s, summed in fours into 8 int32 lanes.
DTENSOR_QUANT_TARGET inline __m256i u8_i8_dot(__m256i init, __m256i u, __m256i s);

// The f32 path's vector: __m256 (AVX2) or __m512 (AVX-512), with its zero, add and sum of lanes.
using F32Vec = DTENSOR_QUANT_F32;
DTENSOR_QUANT_TARGET inline F32Vec f32_zero();
DTENSOR_QUANT_TARGET inline F32Vec f32_add(F32Vec a, F32Vec b);
DTENSOR_QUANT_TARGET inline float f32_sum(F32Vec v);

// Chunk c (32 elements) of one row against M rows of f32 x, into accumulator chain k.
template <QuantFormat F, int M, int C>
DTENSOR_QUANT_TARGET inline void chunk_step(const WeightRows& w, const uint8_t* row, int64_t r, int64_t c,
                                            const float* const* x, const float* const* sums, int k, F32Vec (&acc)[M][C],
                                            float (&offset)[M][C]);

// The f16 at p broadcast to eight f32 lanes.
DTENSOR_QUANT_TARGET inline __m256 f16_broadcast(const uint8_t* p) {
  int16_t bits;
  std::memcpy(&bits, p, 2);
  return _mm256_cvtph_ps(_mm_set1_epi16(bits));
}

DTENSOR_QUANT_TARGET inline float f16_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return _cvtsh_ss(bits);
}

DTENSOR_QUANT_TARGET inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

// Row r against M rows of x (x[i], sums[i]), written to out[i][r]; one row of x runs four
// independent accumulator chains.
template <QuantFormat F, int M>
DTENSOR_QUANT_TARGET void row_group(const WeightRows& w, int64_t r, const float* const* x, const float* const* sums,
                                    float* const* out) {
  constexpr int C = M == 1 ? 4 : 1;
  const uint8_t* row = w.data + r * w.row_stride;
  const int64_t chunks = w.cols / 32;
  F32Vec acc[M][C];
  float offset[M][C];
  for (int i = 0; i < M; ++i) {
    for (int k = 0; k < C; ++k) acc[i][k] = f32_zero(), offset[i][k] = 0.0f;
  }
  int64_t c = 0;
  for (; c + C <= chunks; c += C) {
    for (int k = 0; k < C; ++k) chunk_step<F, M, C>(w, row, r, c + k, x, sums, k, acc, offset);
  }
  for (; c < chunks; ++c) chunk_step<F, M, C>(w, row, r, c, x, sums, 0, acc, offset);
  for (int i = 0; i < M; ++i) {
    F32Vec total = acc[i][0];
    float sum = offset[i][0];
    for (int k = 1; k < C; ++k) total = f32_add(total, acc[i][k]), sum += offset[i][k];
    sum += f32_sum(total);
    if constexpr (F == QuantFormat::Int8) {
      for (int64_t j = chunks * 32; j < w.cols; ++j) sum += float(int8_t(row[j])) * x[i][j];
      sum *= w.scales[r];
    }
    out[i][r] = sum;
  }
}

// Rows [row_begin, row_end) against f32 x, up to four rows of x per row_group.
template <QuantFormat F>
DTENSOR_QUANT_TARGET void rows(const WeightRows& w, const Activations& a, int64_t row_begin, int64_t row_end,
                               float* out, int64_t out_stride) {
  constexpr int kGroup = 4;
  const int64_t blocks = w.cols / kGgmlBlock;
  for (int64_t r = row_begin; r < row_end; ++r) {
    for (int64_t i0 = 0; i0 < a.m; i0 += kGroup) {
      const float* x[kGroup];
      const float* sums[kGroup];
      float* y[kGroup];
      const int64_t n = a.m - i0 < kGroup ? a.m - i0 : kGroup;
      for (int64_t i = 0; i < n; ++i) {
        x[i] = a.x + (i0 + i) * w.cols;
        sums[i] = a.block_sums ? a.block_sums + (i0 + i) * blocks : nullptr;
        y[i] = out + (i0 + i) * out_stride;
      }
      if (n == 4) row_group<F, 4>(w, r, x, sums, y);
      if (n == 3) row_group<F, 3>(w, r, x, sums, y);
      if (n == 2) row_group<F, 2>(w, r, x, sums, y);
      if (n == 1) row_group<F, 1>(w, r, x, sums, y);
    }
  }
}

// init + the products of a block's 32 weights with x's 32 int8 values, in 8 int32 lanes (u8_i8_dot
// multiplies unsigned by signed bytes): q4_0 / q4_1 nibbles are unsigned already; q8_0's signed
// weights go in as |w| with x taking w's sign.
template <QuantFormat F>
DTENSOR_QUANT_TARGET inline __m256i block_dot(const uint8_t* block, __m256i xq, __m256i init) {
  __m256i unsigned_part, signed_part = xq;
  if constexpr (F == QuantFormat::Q8_0) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
    unsigned_part = _mm256_sign_epi8(w, w);
    signed_part = _mm256_sign_epi8(xq, w);
  } else {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (F == QuantFormat::Q4_0 ? 2 : 4)));
    unsigned_part = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(15));
  }
  return u8_i8_dot(init, unsigned_part, signed_part);
}

// Block b of one row against M rows of x, into accumulator chain k.
template <QuantFormat F, int M, int C>
DTENSOR_QUANT_TARGET inline void int8_block(const uint8_t* row, int64_t b, int64_t blocks, int64_t cols,
                                            const Int8Activations& a, int64_t i0, int k, __m256 (&acc)[M][C],
                                            float (&offset)[M][C]) {
  const uint8_t* block = row + b * block_bytes_of(F);
  const __m256 d = f16_broadcast(block);
  for (int i = 0; i < M; ++i) {
    const int64_t at = (i0 + i) * blocks + b;
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + (i0 + i) * cols + b * 32));
    const __m256i init = F == QuantFormat::Q4_0 ? _mm256_set1_epi32(-a.q_sums[at]) : _mm256_setzero_si256();
    const __m256i dot = block_dot<F>(block, xq, init);
    acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(d, _mm256_set1_ps(a.scale[at])), acc[i][k]);
    if constexpr (F == QuantFormat::Q4_1) offset[i][k] += f16_at(block + 2) * a.sums[at];
  }
}

// One q8_0 / q4_0 / q4_1 row against M rows of q8_0-rounded x. One row of x (decode) runs four
// independent accumulator chains, so the adds' latency does not bound the loop.
template <QuantFormat F, int M>
DTENSOR_QUANT_TARGET void int8_row_group(const WeightRows& w, int64_t r, const Int8Activations& a, int64_t i0,
                                         float* out, int64_t out_stride) {
  constexpr int C = M == 1 ? 4 : 1;
  const uint8_t* row = w.data + r * w.row_stride;
  const int64_t blocks = w.cols / kGgmlBlock;
  __m256 acc[M][C];
  float offset[M][C];
  for (int i = 0; i < M; ++i) {
    for (int k = 0; k < C; ++k) acc[i][k] = _mm256_setzero_ps(), offset[i][k] = 0.0f;
  }
  int64_t b = 0;
  for (; b + C <= blocks; b += C) {
    for (int k = 0; k < C; ++k) int8_block<F, M, C>(row, b + k, blocks, w.cols, a, i0, k, acc, offset);
  }
  for (; b < blocks; ++b) int8_block<F, M, C>(row, b, blocks, w.cols, a, i0, 0, acc, offset);
  for (int i = 0; i < M; ++i) {
    __m256 total = acc[i][0];
    float off = offset[i][0];
    for (int k = 1; k < C; ++k) total = _mm256_add_ps(total, acc[i][k]), off += offset[i][k];
    out[(i0 + i) * out_stride + r] = horizontal_sum(total) + off;
  }
}

// Four rows [r, r + 4) against one row i of x (a decode step): x's block is loaded once for the
// four, and the four accumulators are independent chains.
template <QuantFormat F>
DTENSOR_QUANT_TARGET void int8_four_rows(const WeightRows& w, int64_t r, const Int8Activations& a, int64_t i,
                                         float* out, int64_t out_stride) {
  constexpr int64_t kBlockBytes = block_bytes_of(F);
  const int64_t blocks = w.cols / kGgmlBlock;
  const uint8_t* rows[4];
  __m256 acc[4];
  float offset[4];
  for (int k = 0; k < 4; ++k) rows[k] = w.data + (r + k) * w.row_stride, acc[k] = _mm256_setzero_ps(), offset[k] = 0;
  const int8_t* xrow = a.q + i * w.cols;
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xrow + b * 32));
    const float xd = a.scale[i * blocks + b], xs = a.sums[i * blocks + b];
    // q4_0's w = d (q - 8): -8 sum(x q) spread over the 8 lanes the dot product starts from.
    const __m256i init = F == QuantFormat::Q4_0 ? _mm256_set1_epi32(-a.q_sums[i * blocks + b]) : _mm256_setzero_si256();
    // The next four rows, as far ahead as this group has come: the stream the prefetcher would
    // otherwise find late, the rows being short.
    _mm_prefetch(reinterpret_cast<const char*>(rows[0] + 4 * w.row_stride + b * 4 * kBlockBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(rows[0] + 4 * w.row_stride + b * 4 * kBlockBytes + 64), _MM_HINT_T0);
    for (int k = 0; k < 4; ++k) {
      const uint8_t* block = rows[k] + b * kBlockBytes;
      const __m256i dot = block_dot<F>(block, xq, init);
      acc[k] =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(f16_broadcast(block), _mm256_set1_ps(xd)), acc[k]);
      if constexpr (F == QuantFormat::Q4_1) offset[k] += f16_at(block + 2) * xs;
    }
  }
  for (int k = 0; k < 4; ++k) out[i * out_stride + r + k] = horizontal_sum(acc[k]) + offset[k];
}

template <QuantFormat F>
DTENSOR_QUANT_TARGET void int8_rows(const WeightRows& w, const Int8Activations& a, int64_t row_begin, int64_t row_end,
                                    float* out, int64_t out_stride) {
  int64_t r = row_begin;
  // Four nibble rows at a time stream faster than one; q8_0's 34-byte blocks stream at about a
  // third of the rate when four rows interleave, so q8_0 runs one row at a time.
  if (a.m == 1 && F != QuantFormat::Q8_0) {
    for (; r + 4 <= row_end; r += 4) int8_four_rows<F>(w, r, a, 0, out, out_stride);
  }
  for (; r < row_end; ++r) {
    int64_t i0 = 0;
    for (; i0 + 4 <= a.m; i0 += 4) int8_row_group<F, 4>(w, r, a, i0, out, out_stride);
    for (; i0 < a.m; ++i0) int8_row_group<F, 1>(w, r, a, i0, out, out_stride);
  }
}

// This instruction set's kernels, by format.
Int8RowsKernel int8_rows_kernel_of(QuantFormat format) {
  switch (format) {
    case QuantFormat::Q8_0:
      return int8_rows<QuantFormat::Q8_0>;
    case QuantFormat::Q4_0:
      return int8_rows<QuantFormat::Q4_0>;
    default:
      return int8_rows<QuantFormat::Q4_1>;
  }
}

RowsKernel rows_kernel_of(QuantFormat format) {
  switch (format) {
    case QuantFormat::Int8:
      return rows<QuantFormat::Int8>;
    case QuantFormat::Q8_0:
      return rows<QuantFormat::Q8_0>;
    case QuantFormat::Q4_0:
      return rows<QuantFormat::Q4_0>;
    case QuantFormat::Q4_1:
      return rows<QuantFormat::Q4_1>;
    case QuantFormat::NF4:
      return rows<QuantFormat::NF4>;
  }
  return nullptr;
}

}  // namespace
}  // namespace dtensor::quant
