// Rotary embedding and grouped-query causal attention on CUDA tensors: the device side of
// tensor/attention.hpp, whose functions check shapes, dtypes and the head map, then call these.
//
// Attention runs over blocks of queries; for each block three launches (plus one that writes
// the GEMMs' pointer arrays; heads whose matrices cannot all be 16-byte aligned, as for a
// 16-bit head_dim not a multiple of 8, run as one GEMM each instead):
//   scores[h] = q_h k_kv(h)^T / sqrt(D)   batched cuBLAS GEMM over the query heads, f32 out
//   probs = causal softmax(scores)         one kernel, f32 math; f32 in place, else q's dtype
//   out_h = probs[h] v_kv(h)               batched GEMM writing straight into out [S, H, D]
// The heads are batched through pointer arrays, so any query-to-KV head map (grouped-query, or
// this rank's slice of the heads) costs the same as plain multi-head attention. A block
// multiplies only the keys its last query can see, and blocks are sized so that the scores
// stay under kScoreBudget elements whatever the sequence length.
#include "tensor/cuda/blas.hpp"
#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/cuda_ops.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/cuda/strided_walk.hpp"
#include "tensor/kernel_util.hpp"

#include <algorithm>
#include <cmath>

namespace dtensor::cuda {

namespace {

constexpr int64_t kScoreBudget = int64_t(1) << 25;  // f32 scores of one block: 128 MiB

// One batched GEMM over query heads [first, first + count): column-major C_h = op(A_h) B_h with
// m x k times k x n, A the KV operand (transposed for the scores), B and C per query head.
struct HeadGemm {
  cublasOperation_t transa = CUBLAS_OP_N;
  int64_t m = 0, n = 0, k = 0;
  const Tensor* a = nullptr;  // k or v: KV head j starts at element j * a_head_elems
  int64_t lda = 0, a_head_elems = 0;
  const Tensor* b = nullptr;  // q or probs
  int64_t ldb = 0, b_head_elems = 0, b_offset_elems = 0;
  const Tensor* c = nullptr;  // scores or out
  int64_t ldc = 0, c_head_elems = 0, c_offset_elems = 0;
  double alpha = 1.0;
};

// Batched GEMMs through pointer arrays want every matrix 16-byte aligned (cuBLAS cannot inspect
// device-side pointers); that holds when each array's base and per-head step are multiples of 16
// bytes, as for head_dim % 8 == 0 in 16-bit. Otherwise the heads run as separate GEMMs.
bool batch_aligned(const kernels::HeadBatch& b) {
  const auto bits = reinterpret_cast<uintptr_t>(b.a) | reinterpret_cast<uintptr_t>(b.b) |
                    reinterpret_cast<uintptr_t>(b.c) | uintptr_t(b.a_stride) | uintptr_t(b.b_stride) |
                    uintptr_t(b.c_stride);
  return bits % 16 == 0;
}

void run_head_gemm(const HeadGemm& g, const std::vector<int64_t>& kv_head_of, int64_t first, int64_t count) {
  const int device = g.c->device().index;
  const int64_t a_elem = dtype_size(g.a->dtype()), b_elem = dtype_size(g.b->dtype());
  const int64_t c_elem = dtype_size(g.c->dtype());
  kernels::HeadBatch batch;
  batch.a = static_cast<const char*>(g.a->data_ptr());
  batch.a_stride = g.a_head_elems * a_elem;
  batch.b = static_cast<const char*>(g.b->data_ptr()) + (g.b_offset_elems + first * g.b_head_elems) * b_elem;
  batch.b_stride = g.b_head_elems * b_elem;
  batch.c = static_cast<char*>(g.c->data_ptr()) + (g.c_offset_elems + first * g.c_head_elems) * c_elem;
  batch.c_stride = g.c_head_elems * c_elem;
  batch.count = int(count);
  for (int64_t h = 0; h < count; ++h) batch.kv_head[h] = int(kv_head_of[size_t(first + h)]);

  const DType math = g.c->dtype() == DType::F64 ? DType::F64 : g.a->dtype();
  const double zero_d = 0.0;
  const float alpha_f = float(g.alpha), zero_f = 0.0f;
  const bool f64 = math == DType::F64;
  const void* alpha = f64 ? static_cast<const void*>(&g.alpha) : &alpha_f;
  const void* beta = f64 ? static_cast<const void*>(&zero_d) : &zero_f;
  const cudaDataType_t a_type = blas::cuda_type(g.a->dtype()), b_type = blas::cuda_type(g.b->dtype());
  const cudaDataType_t c_type = blas::cuda_type(g.c->dtype());
  cublasHandle_t handle = blas::handle_on_current_stream(device);
  if (!batch_aligned(batch)) {
    for (int64_t h = 0; h < count; ++h) {
      cublas_check(cublasGemmEx(handle, g.transa, CUBLAS_OP_N, int(g.m), int(g.n), int(g.k), alpha,
                                batch.a + batch.kv_head[h] * batch.a_stride, a_type, int(g.lda),
                                batch.b + h * batch.b_stride, b_type, int(g.ldb), beta, batch.c + h * batch.c_stride,
                                c_type, int(g.ldc), blas::compute_type(math), CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx");
    }
    return;
  }
  // The pointer arrays live in a stream-ordered block of the caching allocator, like any operand.
  Tensor pointers = Tensor::empty({3 * count}, DType::I64, g.c->device());
  void** table = static_cast<void**>(pointers.data_ptr());
  kernels::head_pointers(batch, table, current_stream(device));
  check_launch("causal_attention");
  cublas_check(cublasGemmBatchedEx(handle, g.transa, CUBLAS_OP_N, int(g.m), int(g.n), int(g.k), alpha, table, a_type,
                                   int(g.lda), table + count, b_type, int(g.ldb), beta, table + 2 * count, c_type,
                                   int(g.ldc), int(count), blas::compute_type(math), CUBLAS_GEMM_DEFAULT),
               "cublasGemmBatchedEx");
}

// The GEMM of every head, in chunks of at most kMaxBatchedHeads heads.
void run_heads(const HeadGemm& g, const std::vector<int64_t>& kv_head_of) {
  const int64_t heads = int64_t(kv_head_of.size());
  for (int64_t first = 0; first < heads; first += kernels::kMaxBatchedHeads) {
    run_head_gemm(g, kv_head_of, first, std::min<int64_t>(kernels::kMaxBatchedHeads, heads - first));
  }
}

void check_on_one_gpu(const Tensor& q, const Tensor& t, const char* op, const char* name) {
  check<DeviceError>(q.device().type == DeviceType::CUDA && t.device() == q.device(), op,
                     "'{}' is on {}, expected q's CUDA device {}", name, t.device(), q.device());
}

}  // namespace

Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  // rotary_tables repeats the angles (emb = cat(freqs, freqs)); the kernel reads one half, in x's
  // compute type (the values are the tables' own, already rounded to x's dtype).
  const int64_t half = x.shape().back() / 2;
  const DType compute = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  return rotary_embedding(x, cos.narrow(1, 0, half).to(compute), sin.narrow(1, 0, half).to(compute));
}

Tensor causal_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                        const std::vector<int64_t>& kv_head_of) {
  const char* op = "causal_attention";
  check_on_one_gpu(q_in, k_in, op, "k");
  check_on_one_gpu(q_in, v_in, op, "v");
  check_device_exists(q_in.device(), op);
  // Cached keys and values are a prefix of their buffer: already contiguous, so no copy here.
  const Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const int64_t seq = q.size(0), heads = q.size(1), d = q.size(2);
  const int64_t total = k.size(0), kv_heads = k.size(1), past = total - seq;
  const DType dtype = q.dtype();
  Tensor out = Tensor::empty(q.shape(), dtype, q.device());
  if (out.numel() == 0) return out;
  const int device = q.device().index;
  DeviceGuard guard(device);

  const DType score_dtype = dtype == DType::F64 ? DType::F64 : DType::F32;
  const int64_t block = std::clamp<int64_t>(kScoreBudget / (heads * total), 1, seq);
  for (int64_t begin = 0; begin < seq; begin += block) {
    const int64_t rows = std::min(block, seq - begin), keys = past + begin + rows;
    // [heads, rows, ld]: row-major per head, i.e. column-major [keys, rows] with ld >= keys, the
    // rows padded to 8 elements so that every head's matrix starts 16-byte aligned.
    const int64_t ld = (keys + 7) / 8 * 8;
    Tensor scores = Tensor::empty({heads, rows, ld}, score_dtype, q.device());
    Tensor probs = dtype == score_dtype ? scores : Tensor::empty(scores.shape(), dtype, q.device());

    // scores_h^T [keys, rows] = k_kv [keys, D] (column-major [D, keys], read transposed) x q_h^T [D, rows].
    HeadGemm qk;
    qk.transa = CUBLAS_OP_T;
    qk.m = keys, qk.n = rows, qk.k = d;
    qk.a = &k, qk.lda = kv_heads * d, qk.a_head_elems = d;
    qk.b = &q, qk.ldb = heads * d, qk.b_head_elems = d, qk.b_offset_elems = begin * heads * d;
    qk.c = &scores, qk.ldc = ld, qk.c_head_elems = rows * ld;
    qk.alpha = 1.0 / std::sqrt(double(d));
    run_heads(qk, kv_head_of);

    kernels::causal_softmax_rows(scores.data_ptr(), probs.data_ptr(), elem_type(dtype), heads * rows, keys, ld, rows,
                                 past + begin + 1, current_stream(device));
    check_launch(op);

    // out_h^T [D, rows] = v_kv^T [D, keys] (column-major, ld kv_heads * D) x probs_h^T [keys, rows] (ld ld).
    HeadGemm pv;
    pv.m = d, pv.n = rows, pv.k = keys;
    pv.a = &v, pv.lda = kv_heads * d, pv.a_head_elems = d;
    pv.b = &probs, pv.ldb = ld, pv.b_head_elems = rows * ld;
    pv.c = &out, pv.ldc = heads * d, pv.c_head_elems = d, pv.c_offset_elems = begin * heads * d;
    run_heads(pv, kv_head_of);
  }
  return out;
}

}  // namespace dtensor::cuda
