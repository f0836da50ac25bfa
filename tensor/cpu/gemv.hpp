// Matrix-vector products on the CPU: every decode step's Linear (one token's row times W^T), and
// the two attention products of one query (internal; not installed).
//
// Such a product reads each weight once, so it runs at the speed a core streams memory. On the
// hosts we measured, that speed needs one weight row read at a time with several independent
// accumulators: interleaving several rows (what GEMM libraries do, oneDNN included) halved it for
// 16-bit weights (bench/bench_tp_forward's decode_bw_fraction). The kernel is compiled for
// AVX2 + FMA + F16C by function attributes and chosen at run time, whatever the build baseline.
#pragma once

#include "tensor/tensor.hpp"

namespace dtensor::cpu {

// out[0, n] = sum_k a[0, k] * b[k, n] (+ bias[n]) with f32 accumulation, rounded once into out's
// dtype, when a is [1, K] and b is [K, N] with unit stride along K (a transposed row-major weight
// W[N, K]: dot products of W's rows) or along N (a row-major matrix, such as a KV head [T, D]: its
// rows scaled and summed), rows any distance apart; a and b in f32, bf16 or f16, out [1, N] (any
// column stride) in f32 or a's dtype, bias undefined or [N] (contiguous) in out's dtype. Returns
// false, touching nothing, for any other product or on a CPU without AVX2 / FMA / F16C; the
// caller then runs GEMM. Rows (or column blocks) are split over the kernel threads
// (tensor/cpu/threads.hpp).
bool gemv(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out);

}  // namespace dtensor::cpu
