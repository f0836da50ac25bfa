// The ops of tensor/ops.hpp for tensors on a CUDA device, plus the GPU-side pieces of the
// models' layers (rotary embedding, grouped-query causal attention, top-k routing). The public
// ops reach these through the backend's kernel table (tensor/cuda/cuda_kernels.cpp, registered
// when libdtensor_cuda.so loads; tensor/device_kernels.hpp); code linked with the backend may call
// them directly too. Every argument must be on the same CUDA device
// (DeviceError naming it otherwise); dtype and shape rules are those of the CPU ops. Results are
// queued on the device's current stream (tensor/cuda/device_memory.hpp), so they are ready for
// any later work queued there.
#pragma once

#include "tensor/cuda/launch.hpp"
#include "tensor/tensor.hpp"

#include <utility>
#include <vector>

namespace dtensor::cuda {

Tensor binary(kernels::BinaryOp op, const Tensor& a, const Tensor& b, const char* name);
// a op s for the scalar forms of add and mul.
Tensor scalar(kernels::UnaryOp op, const Tensor& a, double s, const char* name);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);
Tensor unary(kernels::UnaryOp op, const Tensor& a, const char* name);

Tensor reduce(kernels::RowReduce op, const Tensor& a, const std::vector<int64_t>& dims, bool keepdim, const char* name);
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim);
Tensor softmax(const Tensor& a, int64_t dim, bool log, const char* name);

// GEMMs through cuBLAS / cuBLASLt (tensor/cuda/gemm.cpp). f32 is exact unless TF32 is allowed.
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// Opt-in: f32 GEMMs may run on tensor cores in TF32 (about 10 mantissa bits). Off by default.
void set_allow_tf32(bool allow);
bool allow_tf32();

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);
Tensor embedding(const Tensor& weight, const Tensor& ids);

// Normalisation over the last dim; weight (and bias) [last dim] or undefined.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);

// Rotary position embedding, rotate-half form (Llama): x [tokens, heads, head_dim] (or any
// [..., heads, head_dim] whose leading dims flatten to tokens), cos and sin [tokens, head_dim/2]
// in f32 (f64 for f64 x). For i < h = head_dim/2: y_i = x_i cos_i - x_{i+h} sin_i,
// y_{i+h} = x_{i+h} cos_i + x_i sin_i, each product rounded to x's dtype before the sum (as torch).
Tensor rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin);

// The device side of tensor/attention.hpp (tensor/cuda/attention.cpp); the functions there check
// shapes, dtypes and kv_head_of, then call these. apply_rotary takes the [S, head_dim] tables
// rotary_tables makes (any floating dtype); causal_attention needs kv_head_of given in full.
Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin);
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of);

// The k largest entries of each row (last dim), descending, ties to the lower index, as
// torch.topk(sorted=True): {values (a's dtype), indices (i64)}, both [..., k]. k <= 16.
std::pair<Tensor, Tensor> topk(const Tensor& a, int64_t k);
// The same along any dim (the public topk's CUDA side).
std::pair<Tensor, Tensor> topk(const Tensor& a, int64_t k, int64_t dim);

}  // namespace dtensor::cuda
