// Kernels on local tensors: Eigen on the CPU; tensors on a CUDA device run the CUDA kernels of
// tensor/cuda/ in the CUDA backend library (tensor/device_kernels.hpp; DeviceError naming the
// library and the reason where it cannot be loaded), all arguments on that one device.
// Every function accepts strided inputs and returns a new contiguous tensor unless it says
// otherwise. 16-bit float inputs are computed in float and rounded on store.
#pragma once

#include "tensor/tensor.hpp"

#include <utility>
#include <vector>

namespace dtensor {

// Elementwise binary ops with NumPy/PyTorch broadcasting. Both inputs must have the same dtype
// (DTypeError otherwise); the result has that dtype.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// Scalar forms: the scalar is converted to the tensor's dtype.
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
// where(cond, a, b): cond is u8 (non-zero = take a); all three broadcast together.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// Comparisons broadcast like the binary ops and return u8 (0 or 1).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// Unary math (floating dtypes only, DTypeError otherwise; neg/abs/relu also take integers).
Tensor neg(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor silu(const Tensor& a);
Tensor gelu(const Tensor& a);  // exact erf form, as torch.nn.functional.gelu's default

// Matrix products (floating dtypes). matmul: [m,k]x[k,n] -> [m,n]; [b,m,k]x[b,k,n] -> [b,m,n];
// [b,m,k]x[k,n] -> [b,m,n]. bmm requires both 3-D with equal batch.
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);
// x @ weight^T (+ bias): x [..., in], weight [out, in], bias [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Reductions over the given dims (negative allowed; empty list = all dims).
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Index (i64) of the first maximum along dim.
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);

// The k largest entries along dim, largest first, and their i64 indices (torch.topk with
// largest=True, sorted=True): equal values keep the lower index first, NaN ranks above numbers.
// ValueError unless 0 <= k <= size of dim (and k <= 16 on CUDA tensors).
std::pair<Tensor, Tensor> topk(const Tensor& values, int64_t k, int64_t dim = -1);

Tensor softmax(const Tensor& a, int64_t dim);
Tensor log_softmax(const Tensor& a, int64_t dim);
// Normalisations over the last dim, weight and bias 1-D of that size (either may be undefined).
// layer_norm: (x - mean) / sqrt(var + eps) * weight + bias with the biased variance, as torch.
// rms_norm: x * rsqrt(mean(x^2) + eps) * weight, as HF's RMSNorm (16-bit inputs in f32 throughout).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);

// Joining and splitting. chunk follows torch.chunk: chunk size ceil(n / chunks), trailing pieces
// may be short; like torch it may return fewer than `chunks` pieces. split/chunk return views.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim);

// Gathers: index is i32 or i64; out-of-range indices raise ValueError naming the index.
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);
// weight [vocab, dim], ids of any shape -> [*ids.shape, dim].
Tensor embedding(const Tensor& weight, const Tensor& ids);
// Where mask (u8, broadcast to a) is non-zero, value; elsewhere a.
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);

// Comparisons, computed on the host (tensors on a GPU are copied there; the two may be on
// different devices).
// Same shape and |a - b| <= atol + rtol * |b| everywhere (NaNs never close). Dtypes may differ.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);
// Same shape, dtype and exactly equal values.
bool equal(const Tensor& a, const Tensor& b);
// Largest |a - b| (as double); shapes must match.
double max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace dtensor
