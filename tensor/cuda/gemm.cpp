// matmul, bmm and linear for CUDA tensors through cuBLAS (strided-batched GEMM) and cuBLASLt
// (linear with the bias fused into the GEMM epilogue).
//
// Row-major products are run as their column-major transposes: C = A B (row-major) is
// C^T = B^T A^T, and a row-major [r, c] matrix is a column-major [c, r] one, so no data moves.
// f32 computes in exact f32 unless set_allow_tf32(true); bf16/f16 run on tensor cores with f32
// accumulation; f64 in f64.
#include "tensor/cuda/blas.hpp"
#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/cuda_ops.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/kernel_util.hpp"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <atomic>
#include <map>
#include <mutex>
#include <tuple>

namespace dtensor::cuda {

namespace {

std::atomic<bool> tf32_allowed{false};

// One cuBLAS and one cuBLASLt handle per device, made on first use, plus the Lt workspace.
struct Handles {
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  Tensor workspace;
};
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;

Handles& handles(int device) {
  static std::mutex mutex;
  static auto* per_device = new std::map<int, Handles>();  // never destroyed (see device_memory.cpp)
  std::lock_guard lock(mutex);
  Handles& h = (*per_device)[device];
  if (h.blas == nullptr) {
    DeviceGuard guard(device);
    cublas_check(cublasCreate(&h.blas), "cublasCreate");
    cublas_check(cublasLtCreate(&h.lt), "cublasLtCreate");
    h.workspace = Tensor::empty({int64_t(kLtWorkspaceBytes)}, DType::U8, Device::cuda(device));
  }
  return h;
}

void check_gemm_args(const Tensor& a, const Tensor& b, const char* op, const char* name_a, const char* name_b) {
  detail::check_defined(a, op, name_a);
  detail::check_defined(b, op, name_b);
  check<DeviceError>(a.device().type == DeviceType::CUDA && b.device() == a.device(), op,
                     "'{}' and '{}' must be on one CUDA device, got {} and {}", name_a, name_b, a.device(), b.device());
  check_device_exists(a.device(), op);
  detail::check_same_dtype(a, b, op, name_a, name_b);
  detail::check_floating(a, op, name_a);
}

using blas::compute_type;
using blas::cuda_type;

// A GEMM operand as cuBLAS reads it in place: per batch, a row-major matrix with row stride ld
// (rows may be padded: a narrowed view), or the transpose of one (memory holds the matrix's
// columns as rows, e.g. W.transpose(1, 2) of packed expert weights). Other views are copied.
struct GemmOperand {
  Tensor data;
  bool transposed = false;
  int64_t ld = 0;            // elements between consecutive rows of the matrix as stored
  int64_t batch_stride = 0;  // elements between batches; 0 reuses one matrix for every batch
};

GemmOperand gemm_operand(const Tensor& x) {
  const int64_t d = x.dim(), rows = x.size(d - 2), cols = x.size(d - 1);
  const int64_t row_stride = x.strides()[size_t(d - 2)], col_stride = x.strides()[size_t(d - 1)];
  const int64_t batch_stride = d == 3 && x.size(0) > 1 ? x.strides()[0] : 0;
  if (rows > 0 && cols > 0 && (d == 2 || x.size(0) == 1 || batch_stride > 0)) {
    if (col_stride == 1 && (rows == 1 || row_stride >= cols))
      return {x, false, rows == 1 ? cols : row_stride, batch_stride};
    if (row_stride == 1 && (cols == 1 || col_stride >= rows))
      return {x, true, cols == 1 ? rows : col_stride, batch_stride};
  }
  const Tensor c = x.contiguous();
  return {c, false, cols, d == 3 ? rows * cols : 0};
}

// Row-major out[batch][m, n] = a[batch][m, k] @ b[batch][k, n] (out contiguous). cuBLAS is
// column-major, so this runs out^T = b^T a^T: a row-major operand is its own transpose there.
void gemm_rows(const GemmOperand& a, const GemmOperand& b, const Tensor& out, int64_t batch, int64_t m, int64_t n,
               int64_t k) {
  const int device = out.device().index;
  DeviceGuard guard(device);
  cublasHandle_t handle = blas::handle_on_current_stream(device);
  const cudaDataType_t type = cuda_type(out.dtype());
  const double one_d = 1.0, zero_d = 0.0;
  const float one_f = 1.0f, zero_f = 0.0f;
  const bool f64 = out.dtype() == DType::F64;
  if (k == 0) {  // an empty sum: cuBLAS would leave out untouched
    out.fill(0.0);
    return;
  }
  const cublasOperation_t op_a = a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublas_check(cublasGemmStridedBatchedEx(handle, op_b, op_a, int(n), int(m), int(k),
                                          f64 ? static_cast<const void*>(&one_d) : &one_f, b.data.data_ptr(), type,
                                          int(b.ld), b.batch_stride, a.data.data_ptr(), type, int(a.ld), a.batch_stride,
                                          f64 ? static_cast<const void*>(&zero_d) : &zero_f, out.data_ptr(), type,
                                          int(n), m * n, int(batch), compute_type(out.dtype()), CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx");
}

}  // namespace

namespace blas {

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::F64:
      return CUDA_R_64F;
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::F16:
      return CUDA_R_16F;
    default:
      fail<DTypeError>("gemm", "no GEMM for dtype {}", dtype);
  }
}

cublasComputeType_t compute_type(DType dtype) {
  if (dtype == DType::F64) return CUBLAS_COMPUTE_64F;
  if (dtype == DType::F32 && tf32_allowed.load()) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

cublasHandle_t handle_on_current_stream(int device) {
  Handles& h = handles(device);
  cublas_check(cublasSetStream(h.blas, current_stream(device)), "cublasSetStream");
  return h.blas;
}

}  // namespace blas

void set_allow_tf32(bool allow) { tf32_allowed.store(allow); }
bool allow_tf32() { return tf32_allowed.load(); }

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  const char* op = "matmul";
  check_gemm_args(a_in, b_in, op, "a", "b");
  check<ShapeError>(a_in.dim() >= 2 && a_in.dim() <= 3 && b_in.dim() >= 2 && b_in.dim() <= 3, op,
                    "a and b must be 2-D or 3-D, got shapes {} and {}", shape_str(a_in.shape()),
                    shape_str(b_in.shape()));
  check<ShapeError>(a_in.shape().back() == b_in.shape()[size_t(b_in.dim()) - 2], op,
                    "a's last dim ({}) must equal b's second-to-last dim ({}); shapes {} and {}", a_in.shape().back(),
                    b_in.shape()[size_t(b_in.dim()) - 2], shape_str(a_in.shape()), shape_str(b_in.shape()));
  const int64_t a_batch = a_in.dim() == 3 ? a_in.shape()[0] : 1;
  const int64_t b_batch = b_in.dim() == 3 ? b_in.shape()[0] : 1;
  check<ShapeError>(a_in.dim() < 3 || b_in.dim() < 3 || a_batch == b_batch, op, "batch sizes differ: shapes {} and {}",
                    shape_str(a_in.shape()), shape_str(b_in.shape()));
  const int64_t m = a_in.shape()[size_t(a_in.dim()) - 2];
  const int64_t k = a_in.shape().back();
  const int64_t n = b_in.shape().back();
  const int64_t batch = std::max(a_batch, b_batch);
  Shape shape = a_in.dim() == 3 || b_in.dim() == 3 ? Shape{batch, m, n} : Shape{m, n};
  Tensor out = Tensor::empty(shape, a_in.dtype(), a_in.device());
  if (out.numel() == 0) return out;
  if (b_in.dim() == 2 && a_in.dim() == 3 && a_in.is_contiguous()) {
    // [batch, m, k] @ [k, n] is one [batch * m, k] @ [k, n] GEMM.
    gemm_rows(gemm_operand(a_in.view({batch * m, k})), gemm_operand(b_in), out, 1, batch * m, n, k);
  } else {
    gemm_rows(gemm_operand(a_in), gemm_operand(b_in), out, batch, m, n, k);
  }
  return out;
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  const char* op = "bmm";
  check_gemm_args(a, b, op, "a", "b");
  check<ShapeError>(a.dim() == 3 && b.dim() == 3 && a.shape()[0] == b.shape()[0], op,
                    "a and b must be 3-D with equal batch size, got shapes {} and {}", shape_str(a.shape()),
                    shape_str(b.shape()));
  return matmul(a, b);
}

namespace {

// A cuBLASLt plan for out^T[N, M] = W[N, K] (x^T)[K, M] (+ bias[N]), made once per shape.
struct LinearPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t w = nullptr, x = nullptr, out = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
};

using PlanKey = std::tuple<int, int64_t, int64_t, int64_t, DType, bool, bool>;

LinearPlan make_linear_plan(Handles& h, int64_t m, int64_t n, int64_t k, DType dtype, bool with_bias) {
  LinearPlan plan;
  const cudaDataType_t type = cuda_type(dtype);
  cublas_check(cublasLtMatmulDescCreate(&plan.desc, compute_type(dtype), CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
  cublas_check(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)),
               "cublasLtMatmulDescSetAttribute");
  cublas_check(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)),
               "cublasLtMatmulDescSetAttribute");
  if (with_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    cublas_check(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
                 "cublasLtMatmulDescSetAttribute");
  }
  // Column-major views: W is [K, N] (ld K) read transposed, x is [K, M] (ld K), out [N, M] (ld N).
  cublas_check(cublasLtMatrixLayoutCreate(&plan.w, type, uint64_t(k), uint64_t(n), k), "cublasLtMatrixLayoutCreate");
  cublas_check(cublasLtMatrixLayoutCreate(&plan.x, type, uint64_t(k), uint64_t(m), k), "cublasLtMatrixLayoutCreate");
  cublas_check(cublasLtMatrixLayoutCreate(&plan.out, type, uint64_t(n), uint64_t(m), n), "cublasLtMatrixLayoutCreate");
  cublasLtMatmulPreference_t preference = nullptr;
  cublas_check(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
  const uint64_t workspace = kLtWorkspaceBytes;
  cublas_check(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                    sizeof(workspace)),
               "cublasLtMatmulPreferenceSetAttribute");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(h.lt, plan.desc, plan.w, plan.x, plan.out, plan.out,
                                                               preference, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  plan.found = status == CUBLAS_STATUS_SUCCESS && found > 0;
  if (plan.found) plan.algo = result.algo;
  return plan;
}

const LinearPlan& linear_plan(int device, int64_t m, int64_t n, int64_t k, DType dtype, bool with_bias) {
  static std::mutex mutex;
  static auto* plans = new std::map<PlanKey, LinearPlan>();  // never destroyed
  const PlanKey key{device, m, n, k, dtype, with_bias, tf32_allowed.load()};
  std::lock_guard lock(mutex);
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, make_linear_plan(handles(device), m, n, k, dtype, with_bias)).first;
  return it->second;
}

// cudaMalloc'd blocks are 256-byte aligned; the Lt plans assume 16 bytes at least.
bool lt_aligned(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

}  // namespace

Tensor linear(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in) {
  const char* op = "linear";
  check_gemm_args(x_in, weight_in, op, "x", "weight");
  check<ShapeError>(weight_in.dim() == 2, op, "weight must be 2-D [out, in], got shape {}",
                    shape_str(weight_in.shape()));
  check<ShapeError>(x_in.dim() >= 1 && x_in.shape().back() == weight_in.shape()[1], op,
                    "x's last dim must equal weight's in-features {}; got x shape {}", weight_in.shape()[1],
                    shape_str(x_in.shape()));
  if (bias_in.defined()) {
    check_gemm_args(x_in, bias_in, op, "x", "bias");
    check<ShapeError>(bias_in.dim() == 1 && bias_in.shape()[0] == weight_in.shape()[0], op,
                      "bias must have shape [{}], got {}", weight_in.shape()[0], shape_str(bias_in.shape()));
  }
  const Tensor x = x_in.contiguous();
  const Tensor weight = weight_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const int64_t k = weight.shape()[1];
  const int64_t n = weight.shape()[0];
  const int64_t m = k == 0 ? x.numel() : x.numel() / k;
  Shape shape = x.shape();
  shape.back() = n;
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  const int device = x.device().index;

  const bool lt_usable = x.dtype() != DType::F64 && k > 0 && lt_aligned(x) && lt_aligned(weight) && lt_aligned(out) &&
                         (!bias.defined() || lt_aligned(bias));
  if (lt_usable) {
    const LinearPlan& plan = linear_plan(device, m, n, k, x.dtype(), bias.defined());
    if (plan.found) {
      DeviceGuard guard(device);
      Handles& h = handles(device);
      if (bias.defined()) {
        const void* bias_ptr = bias.data_ptr();
        cublas_check(
            cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)),
            "cublasLtMatmulDescSetAttribute");
      }
      const float one = 1.0f, zero = 0.0f;
      cublas_check(cublasLtMatmul(h.lt, plan.desc, &one, weight.data_ptr(), plan.w, x.data_ptr(), plan.x, &zero,
                                  out.data_ptr(), plan.out, out.data_ptr(), plan.out, &plan.algo,
                                  h.workspace.data_ptr(), kLtWorkspaceBytes, current_stream(device)),
                   "cublasLtMatmul");
      return out;
    }
  }
  // Fallback: x [m, k] @ weight^T as a plain GEMM (weight^T is read transposed via a copy-free
  // view made contiguous), then the bias as a broadcast add.
  Tensor product = matmul(x.reshape({m, k}), weight.transpose(0, 1));
  if (bias.defined()) product = binary(kernels::BinaryOp::Add, product, bias, op);
  return product.view(shape);
}

}  // namespace dtensor::cuda
