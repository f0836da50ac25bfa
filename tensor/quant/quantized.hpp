// Quantized weight matrices and the linear layer that computes with them (docs/design.md
// section 10, "Quantized weights").
//
// A QuantizedMatrix is a Linear weight W [rows = out features, cols = in features] stored in one
// of five formats, each quantizing consecutive elements of a row (along the input dim):
//
//   format  block  bytes per block                      layout (as shipped by its ecosystem)
//   int8    row    cols int8 + one f32 scale per row    LLM.int8 / bitsandbytes: q = round(w * 127 / absmax)
//   q8_0    32     34: f16 d, 32 int8                   ggml block_q8_0:  w = d * q
//   q4_0    32     18: f16 d, 16 bytes of nibbles       ggml block_q4_0:  w = d * (q - 8)
//   q4_1    32     20: f16 d, f16 m, 16 bytes           ggml block_q4_1:  w = d * q + m
//   nf4     64     32 bytes of nibbles + f32 absmax     bitsandbytes nf4: w = absmax * NF4[q]
//
// ggml blocks store element j of the block in the low nibble of byte j and element j + 16 in its
// high nibble; nf4 stores elements 2j (high nibble) and 2j + 1 (low nibble) in byte j. The ggml
// formats keep their byte layout exactly, so a GGUF tensor of that type is used as shipped.
//
// quantized_linear reads these bytes directly: the matrix is never dequantized as a whole. Rows
// are split over the kernel threads (tensor/cpu/threads.hpp); the CPU kernels are chosen at run
// time among AVX-512, AVX2 + FMA and a scalar loop. On CUDA (a matrix moved with to(Device)) the
// same formats run in the CUDA backend.
#pragma once

#include "tensor/tensor.hpp"

#include <cstdint>
#include <string_view>

namespace dtensor {

enum class QuantFormat : uint8_t { Int8, Q8_0, Q4_0, Q4_1, NF4 };

inline constexpr QuantFormat kAllQuantFormats[] = {QuantFormat::Int8, QuantFormat::Q8_0, QuantFormat::Q4_0,
                                                   QuantFormat::Q4_1, QuantFormat::NF4};

// "int8", "q8_0", "q4_0", "q4_1", "nf4".
std::string_view quant_format_name(QuantFormat format);
// The inverse of quant_format_name; ValueError naming the value and the accepted names otherwise.
QuantFormat quant_format_from_name(std::string_view name);

// Elements along a row that share one scale: 32 (q8_0, q4_0, q4_1), 64 (nf4), 1 for int8 (its
// scale belongs to the whole row, so any column boundary is a block boundary). A matrix's cols
// and every column shard boundary must be multiples of it.
int64_t quant_block_size(QuantFormat format);
// Bytes of one block in the packed data (34, 18, 20 for the ggml formats; 32 for nf4 and 1 for
// int8, whose scales are held apart).
int64_t quant_block_bytes(QuantFormat format);

// The 16 NF4 code values, ascending from -1 to 1, as bitsandbytes publishes them.
extern const float kNF4Codes[16];

struct QuantOptions {
  // int8 only: LLM.int8()'s outlier decomposition when > 0. Input feature columns with
  // |x| >= outlier_threshold in any row of the batch are multiplied in f32 with the dequantized
  // weight columns; the other columns with x quantized to int8 per row (absmax / 127) and an
  // integer product, scaled by both scales (bitsandbytes' MatMul8bitLt). 0 keeps x in f32 for
  // every column (weight-only int8). bitsandbytes' default threshold is 6.
  double outlier_threshold = 0.0;
  // q8_0 / q4_0 / q4_1 on the CPU: x rounded to q8_0 blocks first (per 32 elements d = absmax / 127,
  // x ~ d * round(x / d)), as llama.cpp does for these formats, so each block multiplies as an
  // integer dot product; the result is the f32 product of that rounded x with the dequantized
  // matrix (about 0.3% of |x| |w| per element). false keeps x in f32: the exact product, slower.
  // CUDA always keeps x in f32.
  bool quantize_activations = true;
};

class QuantizedMatrix {
 public:
  QuantizedMatrix() = default;  // undefined: defined() is false

  // Quantizes w [rows, cols] (f32, bf16 or f16, CPU) by the format's reference rounding: ggml's
  // quantize_row_*_ref for q8_0 / q4_0 / q4_1, bitsandbytes' quantize_4bit for nf4, round(w * 127
  // / absmax) per row for int8. ShapeError when w is not 2-D or cols is not a multiple of the
  // block size, DTypeError for another dtype.
  static QuantizedMatrix quantize(const Tensor& w, QuantFormat format, const QuantOptions& options = {});

  // Adopts ggml blocks (a GGUF tensor's bytes: u8 or i8, contiguous, rows * cols / 32 blocks,
  // rows one after another) without copying. ValueError for int8 / nf4, ShapeError when the byte
  // count or cols does not fit the format.
  static QuantizedMatrix from_blocks(QuantFormat format, int64_t rows, int64_t cols, const Tensor& blocks);

  // Adopts the parts as data() and scales() return them (a checkpoint of int8 or nf4 weights, or
  // a shard received from another rank): data u8 [rows, bytes per row] (i8 [rows, cols] for int8),
  // scales f32 [rows] for int8, [rows, cols / 64] for nf4, undefined for the ggml formats.
  static QuantizedMatrix from_parts(QuantFormat format, int64_t rows, int64_t cols, const Tensor& data,
                                    const Tensor& scales = {});

  bool defined() const { return data_.defined(); }
  QuantFormat format() const { return format_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  Device device() const { return data_.device(); }
  // Bytes of storage this matrix holds (packed data and scales), for memory reports.
  int64_t bytes() const;
  // The packed data, [rows, bytes per row] (u8; i8 [rows, cols] for int8), and the scales held
  // apart (see from_parts). Both contiguous.
  const Tensor& data() const { return data_; }
  const Tensor& scales() const { return scales_; }

  // The whole matrix in f32 [rows, cols] (tests, and references).
  Tensor dequantize() const;
  // Rows ids (i32 or i64, any shape, each in [0, rows)) dequantized into dtype (f32, bf16, f16):
  // [ids..., cols]. Reads only those rows: an embedding lookup in a quantized table. ValueError
  // naming an id out of range.
  Tensor dequantize_rows(const Tensor& ids, DType dtype = DType::F32) const;

  // Rows [offset, offset + n) / columns [offset, offset + n), copied into storage of their own so
  // the whole matrix can be released (a tensor-parallel shard). ShapeError when the range leaves
  // the matrix, or for columns when offset or offset + n is not a multiple of the block size
  // (the message names the block size and the boundary that splits a block).
  QuantizedMatrix narrow_rows(int64_t offset, int64_t n) const;
  QuantizedMatrix narrow_cols(int64_t offset, int64_t n) const;

  // The same matrix on another device (a copy of data and scales; *this when already there).
  QuantizedMatrix to(Device device) const;

 private:
  QuantizedMatrix(QuantFormat format, int64_t rows, int64_t cols, Tensor data, Tensor scales);

  QuantFormat format_ = QuantFormat::Int8;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  Tensor data_;
  Tensor scales_;
};

// y = x W^T (+ bias): x [..., cols] in f32 or bf16, W quantized [rows, cols], bias undefined or
// [rows] in x's dtype; returns [..., rows] in x's dtype, accumulated in f32. Reads W's packed
// blocks directly (no dequantized copy of the matrix). x and W on the same device. ShapeError /
// DTypeError / DeviceError naming the argument otherwise.
Tensor quantized_linear(const Tensor& x, const QuantizedMatrix& w, const QuantOptions& options = {},
                        const Tensor& bias = {});

}  // namespace dtensor
