// Matrix products on the CPU through oneDNN's matmul primitive (internal; not installed).
//
// oneDNN picks the host's best kernels at run time (AVX2, AVX-512, AVX512-BF16, AMX) and reads
// operands of any strides in place: a transposed weight, a narrowed KV cache, one head of a
// [tokens, heads, dim] tensor. Products accumulate in f32 and round once into the output's dtype.
// Primitives are cached by (shapes, strides, dtypes), so a decode step reuses the prefill's.
#pragma once

#include "tensor/tensor.hpp"

#include <string>

namespace dtensor::cpu {

// out[batch..., m, n] = a[batch..., m, k] @ b[batch..., k, n] (+ bias[n]), where a and b have
// rank >= 2, batch dims broadcast (size 1 or stride 0 in one operand) and out has the broadcast
// shape and any strides. a and b share a dtype (f32, bf16 or f16); out and bias (contiguous) are f32 or a's
// dtype. Returns false, without touching out, when oneDNN has no kernel for these dtypes on this
// host (f16 without AVX512-FP16 / AMX-FP16) or for this rank (more than 12 dims); the caller then
// falls back. Every dim of out must be non-empty and k > 0.
bool onednn_matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out);

// The implementation oneDNN chose for that product ("brg:avx512_core_bf16", "gemm:jit", ...), or
// "none" where onednn_matmul would return false.
std::string onednn_matmul_impl(const Tensor& a, const Tensor& b, const Tensor& out);

// How many primitives have been created so far (cache misses), for tests of the cache.
int64_t onednn_primitives_created();

}  // namespace dtensor::cpu
