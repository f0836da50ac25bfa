// The CPU kernels of quantized_linear, one set per instruction set, chosen at run time (internal;
// not installed).
//
// Each kernel computes out[i, r] = sum_c x[i, c] * W[r, c] for the rows r of one thread's band,
// reading W's packed bytes and keeping x in f32, so its result is the f32 product with the
// dequantized matrix up to summation order. Per-block offsets are folded out of the inner loop:
// q4_0's w = d (q - 8) and q4_1's w = d q + m need sum_c x[c] per block (Activations::block_sums),
// added once per block. nf4's x is read in the order its nibbles unpack (prepare_nf4_activations).
#pragma once

#include "tensor/quant/quantized.hpp"

#include <cstdint>
#include <optional>
#include <string_view>

namespace dtensor::quant {

enum class Isa : uint8_t { Scalar, Avx2, Avx512 };

std::string_view isa_name(Isa isa);  // "scalar", "avx2", "avx512"
// The widest set this host runs (AVX-512 needs F, BW, VL and VNNI; AVX2 also FMA and F16C).
Isa host_isa();
// The set the kernels use: the override when set (capped at host_isa()), else
// DTENSOR_QUANT_ISA=scalar|avx2|avx512 (capped likewise; ValueError for another value), else host_isa().
Isa active_isa();
// Test and benchmark hook: forces an instruction set (std::nullopt restores the default).
void set_isa_override(std::optional<Isa> isa);

// A quantized matrix's packed rows on the host.
struct WeightRows {
  QuantFormat format;
  const uint8_t* data;  // row r at data + r * row_stride
  int64_t row_stride;   // bytes
  const float* scales;  // int8: [rows]; nf4: [rows, cols / 64]; null for the ggml formats
  int64_t cols;
};

// m rows of x in f32, prepared for the format.
struct Activations {
  const float* x;  // row i at x + i * cols (nf4: permuted, see prepare_nf4_activations)
  int64_t m;
  const float* block_sums;  // q4_0 / q4_1: [m, cols / 32] sums of x over each block; else null
};

// Rewrites each 32 elements of x as its 16 even-indexed elements, then its 16 odd-indexed ones:
// the order in which nf4's bytes (element 2j high nibble, 2j + 1 low) unpack into vectors.
void prepare_nf4_activations(const float* x, int64_t cols, float* out);

// out[i * out_stride + r] for i < a.m, r in [row_begin, row_end).
using RowsKernel = void (*)(const WeightRows& w, const Activations& a, int64_t row_begin, int64_t row_end, float* out,
                            int64_t out_stride);
RowsKernel rows_kernel(Isa isa, QuantFormat format);

// x rounded to q8_0 blocks (llama.cpp's activations for these weights): per 32 elements a
// scale d = absmax / 127 and q = nearbyint(x / d), so that q8_0 / q4_0 / q4_1 blocks multiply as integer
// dot products (AVX512-VNNI vpdpbusd, AVX2 vpmaddubsw). The kernels compute the f32 product of the
// rounded x (d q) with the dequantized matrix.
struct Int8Activations {
  const int8_t* q;        // [m, cols]
  const float* scale;     // [m, cols / 32]: d
  const float* sums;      // [m, cols / 32]: d * sum of the block's q (q4_1's m term)
  const int32_t* q_sums;  // [m, cols / 32]: sum of the block's q (q4_0's -8 term, kept in integers)
  int64_t m;
};
void quantize_activations_q8(const float* x, int64_t cols, int8_t* q, float* scale, float* sums, int32_t* q_sums);

using Int8RowsKernel = void (*)(const WeightRows& w, const Int8Activations& a, int64_t row_begin, int64_t row_end,
                                float* out, int64_t out_stride);
// q8_0, q4_0 and q4_1.
Int8RowsKernel int8_rows_kernel(Isa isa, QuantFormat format);
Int8RowsKernel scalar_int8_rows_kernel(QuantFormat format);
Int8RowsKernel avx2_int8_rows_kernel(QuantFormat format);
Int8RowsKernel avx512_int8_rows_kernel(QuantFormat format);

// LLM.int8's integer product: acc[i * acc_stride + r] = sum_c xq[i * cols + c] * wq[r * w_stride + c].
using Int8DotKernel = void (*)(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols,
                               int64_t row_begin, int64_t row_end, int32_t* acc, int64_t acc_stride);
Int8DotKernel int8_dot_kernel(Isa isa);

// The per-instruction-set tables (kernels_scalar.cpp, kernels_avx2.cpp, kernels_avx512.cpp; the last
// two on x86-64 only, where host_isa() can be other than Scalar).
RowsKernel scalar_rows_kernel(QuantFormat format);
RowsKernel avx2_rows_kernel(QuantFormat format);
RowsKernel avx512_rows_kernel(QuantFormat format);
void scalar_int8_dot(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols, int64_t row_begin,
                     int64_t row_end, int32_t* acc, int64_t acc_stride);
void avx2_int8_dot(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols, int64_t row_begin,
                   int64_t row_end, int32_t* acc, int64_t acc_stride);
void avx512_int8_dot(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols, int64_t row_begin,
                     int64_t row_end, int32_t* acc, int64_t acc_stride);

}  // namespace dtensor::quant
