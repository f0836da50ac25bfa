// Launchers of the CUDA kernels (tensor/cuda/*.cu), over raw device pointers. This header is
// read by both nvcc and the host compiler, so it uses plain types only; the Tensor-level code
// in cuda_ops.cpp checks arguments, lays out operands and calls these. Every launcher queues
// its kernel on `stream` and returns at once; launch errors are left for check_launch().
#pragma once

#include "tensor/op_kinds.hpp"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dtensor::cuda::kernels {

// Same order as dtensor::DType (cuda_ops.cpp checks it at compile time).
enum class ElemType : uint8_t { F32, F64, BF16, F16, I32, I64, U8, I8 };

// An N-D walk over `shape` with one element-stride list per operand (0 on broadcast dims).
inline constexpr int kMaxDims = 8;
template <int N>
struct StridedWalk {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
};

// Copies and fills ---------------------------------------------------------------------------
// dst[walk] = convert(src[walk]); operand 0 is dst, 1 is src.
void copy_strided(void* dst, ElemType dst_type, const void* src, ElemType src_type, const StridedWalk<2>& walk,
                  int64_t numel, cudaStream_t stream);
void fill_strided(void* dst, ElemType type, double value, const StridedWalk<1>& walk, int64_t numel,
                  cudaStream_t stream);

// Elementwise --------------------------------------------------------------------------------
using ::dtensor::BinaryOp;
using ::dtensor::is_comparison;
// out (contiguous, `type`, or u8 for comparisons) = a op b; operands 0 = a, 1 = b.
void binary(BinaryOp op, const void* a, const void* b, void* out, ElemType type, const StridedWalk<2>& walk,
            int64_t numel, cudaStream_t stream);
// out = where(cond != 0, a, b); operands 0 = cond (u8), 1 = a, 2 = b.
void where(const void* cond, const void* a, const void* b, void* out, ElemType type, const StridedWalk<3>& walk,
           int64_t numel, cudaStream_t stream);
// out = mask != 0 ? value : a; operands 0 = a, 1 = mask (u8).
void masked_fill(const void* a, const void* mask, double value, void* out, ElemType type, const StridedWalk<2>& walk,
                 int64_t numel, cudaStream_t stream);

using ::dtensor::UnaryOp;
// out = op(in) over n contiguous elements; `scalar` is used by the *Scalar ops.
void unary(UnaryOp op, const void* in, void* out, ElemType type, int64_t n, double scalar, cudaStream_t stream);

// Row kernels over contiguous [rows, cols] ---------------------------------------------------
using ::dtensor::RowReduce;
// out[r] (same type as in) = reduce(in[r, :]); accumulates in float (double for f64, i64 for ints).
void reduce_rows(RowReduce op, const void* in, void* out, ElemType type, int64_t rows, int64_t cols,
                 cudaStream_t stream);
// out[r] (i64) = index of the first maximum of in[r, :] (NaN counts as maximum, as torch).
void argmax_rows(const void* in, int64_t* out, ElemType type, int64_t rows, int64_t cols, cudaStream_t stream);
// Floating types only.
void softmax_rows(const void* in, void* out, ElemType type, int64_t rows, int64_t cols, bool log, cudaStream_t stream);
// Causal attention probabilities: scores [rows, cols] with rows ld >= cols apart are f32 (f64
// when `type` is F64), already scaled; row r is query r % queries of its head and sees columns
// [0, first_visible + r % queries). out (same layout) in `type` gets the softmax over the visible
// columns and 0 after them; it may be `scores` itself when `type` is the scores' type.
void causal_softmax_rows(const void* scores, void* out, ElemType type, int64_t rows, int64_t cols, int64_t ld,
                         int64_t queries, int64_t first_visible, cudaStream_t stream);
// out = in / sqrt(mean(in^2) + eps) * weight; weight [cols] or null.
void rms_norm_rows(const void* in, const void* weight, void* out, ElemType type, int64_t rows, int64_t cols, double eps,
                   cudaStream_t stream);
// out = (in - mean) / sqrt(var + eps) * weight + bias; weight and bias [cols] or null.
void layer_norm_rows(const void* in, const void* weight, const void* bias, void* out, ElemType type, int64_t rows,
                     int64_t cols, double eps, cudaStream_t stream);
// For each row: the k largest values (descending, ties to the lower index) and their indices (i64).
// k <= kMaxTopK.
inline constexpr int kMaxTopK = 16;
void topk_rows(const void* in, void* values, int64_t* indices, ElemType type, int64_t rows, int64_t cols, int k,
               cudaStream_t stream);

// Gathers ------------------------------------------------------------------------------------
// out[i, :] = table[ids[i], :] for a contiguous table [vocab, width]; ids are i32 or i64. An id
// outside [0, vocab) writes zeros and stores itself into *bad_id (one of them), which the caller
// reads back to raise the error.
void gather_rows(const void* table, ElemType type, int64_t vocab, int64_t width, const void* ids, ElemType id_type,
                 int64_t n_ids, void* out, int64_t* bad_id, cudaStream_t stream);
// Rotary embedding (rotate-half form, as Llama): x [rows, heads, head_dim] contiguous, cos/sin
// [rows, head_dim / 2] in x's compute type (f32; f64 for f64 x); out[.., i] = x_i cos - x_{i+h} sin,
// out[.., i+h] = x_{i+h} cos + x_i sin, each product rounded to x's type before the sum.
void rotary(const void* x, const void* cos, const void* sin, void* out, ElemType type, int64_t rows, int64_t heads,
            int64_t head_dim, cudaStream_t stream);

// Attention ----------------------------------------------------------------------------------
// Operands of one batched GEMM over query heads h < count (count <= kMaxBatchedHeads): operand
// A of head h is a + kv_head[h] * a_stride (its KV head), B is b + h * b_stride and the result
// c + h * c_stride (strides in bytes).
inline constexpr int kMaxBatchedHeads = 256;
struct HeadBatch {
  const char* a = nullptr;
  int64_t a_stride = 0;
  const char* b = nullptr;
  int64_t b_stride = 0;
  char* c = nullptr;
  int64_t c_stride = 0;
  int count = 0;
  int kv_head[kMaxBatchedHeads] = {};
};
// Writes 3 * count pointers into `out` (device memory): the A pointers, then the B pointers, then
// the results'.
void head_pointers(const HeadBatch& batch, void* out, cudaStream_t stream);

}  // namespace dtensor::cuda::kernels
