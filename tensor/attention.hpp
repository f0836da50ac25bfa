// CPU kernels of decoder attention: rotary position embedding in Hugging Face's
// convention and grouped-query causal attention over one sequence.
//
//   RotaryTables rope = rotary_tables({past, past + 1, ...}, head_dim, /*theta=*/10000.0, DType::F32);
//   Tensor q_rot = apply_rotary(q, rope);                    // q [S, H, D] -> [S, H, D]
//   Tensor out = causal_attention(q_rot, keys, values);      // keys / values [past + S, Hkv, D]
//
// Rotary follows transformers' LlamaRotaryEmbedding / apply_rotary_pos_emb: inv_freq[i] =
// 1 / theta^(2i / D) and angle = position * inv_freq in f32, emb = cat(angles, angles), cos and
// sin computed in f32 then rounded to the tensor's dtype; x * cos + rotate_half(x) * sin with
// rotate_half(x) = cat(-x[D/2:], x[:D/2]), each product and the sum rounded to x's dtype as the
// torch ops do.
//
// Attention runs per query head and block of 64 queries: scores = q k^T in f32 (oneDNN's GEMM
// on views of q and k, read in place), scaled by 1 / sqrt(D), causal mask (query i sits at
// absolute position T - S + i and sees keys 0 .. T - S + i), softmax in f32, the probabilities
// rounded to the inputs' dtype (as torch's bf16 / f16 attention rounds them), times v (oneDNN,
// written straight into the output's head). f64 runs in f64 with Eigen's products. A 16-bit
// dtype the host has no oneDNN kernel for is computed in f32 from the same values, rounded once.
// On CUDA tensors both run on the device (tensor/cuda/attention.cpp): rotary in f32 from the
// tables, attention as two batched cuBLAS products around a causal softmax in f32. Arguments
// on different devices raise DeviceError naming them.
#pragma once

#include "tensor/tensor.hpp"

#include <vector>

namespace dtensor {

// cos and sin [positions, head_dim] of the given absolute positions, in `dtype`, on `device`
// (computed on the CPU, then copied).
struct RotaryTables {
  Tensor cos;
  Tensor sin;
};

// ValueError for an odd or non-positive head_dim, a non-positive theta or a negative position;
// DTypeError for a non-floating dtype.
RotaryTables rotary_tables(const std::vector<int64_t>& positions, int64_t head_dim, double theta, DType dtype,
                           Device device = Device::cpu());

// x [S, H, D] rotated by the tables of its S positions (same dtype as x, ShapeError / DTypeError
// otherwise). Returns a new contiguous tensor.
Tensor apply_rotary(const Tensor& x, const RotaryTables& tables);

// q [S, Hq, D], k and v [T, Hkv, D] with T >= S, all of one floating dtype. Query head h reads
// KV head kv_head_of[h]; empty kv_head_of means h / (Hq / Hkv) (Hq a multiple of Hkv). Returns
// [S, Hq, D] in q's dtype. ShapeError / DTypeError / ValueError naming the argument otherwise.
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of = {});

}  // namespace dtensor
