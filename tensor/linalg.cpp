// Matrix products: matmul (with broadcast batch dims), bmm, linear.
//
// f32, bf16 and f16 products run in oneDNN (tensor/cpu/onednn_gemm.hpp), which picks the host's
// best kernels at run time and accumulates in f32, rounding once into the operands' dtype. Where
// the host has no oneDNN kernel for a 16-bit type (f16 without AVX512-FP16), the operands are
// widened to f32 and the f32 product is rounded once: the same numerics. f64 products, and the
// rare product oneDNN cannot take (more than 12 dims), run in Eigen's GEMM on Maps of the operands.
// One row times a matrix (every decode step's Linear and experts) runs in our matrix-vector
// kernel (tensor/cpu/gemv.hpp), which streams the weights at the speed a core reads memory.
//
// Either way a 2-D operand whose rows or columns are contiguous is read in place, as a row-major
// or a column-major matrix with a leading dimension; so x @ W^T reads W where it is. Only
// layouts GEMM cannot read (both strides > 1, or a stride-0 broadcast) are copied.
#include "tensor/cpu/gemv.hpp"
#include "tensor/cpu/onednn_gemm.hpp"
#include "tensor/cpu/threads.hpp"
#include "tensor/device_kernels.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

#include <optional>

namespace dtensor {
namespace {

// How GEMM reads a [rows, cols] operand: row-major or column-major with leading dimension ld.
struct MatrixLayout {
  bool row_major = true;
  int64_t ld = 0;
};

// The layout of a [rows, cols] block with the given element strides, if GEMM can read it in
// place. The stride of a size-1 dim is meaningless, so such dims fit either layout.
std::optional<MatrixLayout> gemm_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  if (rows == 0 || cols == 0) return MatrixLayout{true, std::max<int64_t>(cols, 1)};  // no reads
  if (cols == 1 || col_stride == 1) {
    const int64_t ld = rows == 1 ? std::max<int64_t>(cols, 1) : row_stride;
    if (ld >= std::max<int64_t>(cols, 1)) return MatrixLayout{true, ld};
  }
  if (rows == 1 || row_stride == 1) {
    const int64_t ld = cols == 1 ? std::max<int64_t>(rows, 1) : col_stride;
    if (ld >= std::max<int64_t>(rows, 1)) return MatrixLayout{false, ld};
  }
  return std::nullopt;
}

// The two matrix dims of an operand of rank >= 2.
struct MatrixDims {
  int64_t rows, cols, row_stride, col_stride;
};
MatrixDims matrix_dims(const Tensor& t) {
  const size_t r = size_t(t.dim()) - 2;
  return {t.shape()[r], t.shape()[r + 1], t.strides()[r], t.strides()[r + 1]};
}

// t itself when GEMM can read its matrices in place, otherwise a contiguous copy.
Tensor gemm_readable(const Tensor& t) {
  const MatrixDims d = matrix_dims(t);
  return gemm_layout(d.rows, d.cols, d.row_stride, d.col_stride) ? t : t.contiguous();
}

template <typename C, int Order>
using MatrixMap = Eigen::Map<const Eigen::Matrix<C, Eigen::Dynamic, Eigen::Dynamic, Order>, 0, Eigen::OuterStride<>>;
template <typename C>
using OutMap = Eigen::Map<Eigen::Matrix<C, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

template <typename C, int OrderA>
void gemm_with_a(const MatrixMap<C, OrderA>& a, const C* b, MatrixLayout lb, int64_t k, int64_t n, OutMap<C>& out) {
  if (lb.row_major) {
    out.noalias() = a * MatrixMap<C, Eigen::RowMajor>(b, k, n, Eigen::OuterStride<>(lb.ld));
  } else {
    out.noalias() = a * MatrixMap<C, Eigen::ColMajor>(b, k, n, Eigen::OuterStride<>(lb.ld));
  }
}

// out[m,n] (contiguous) = a[m,k] @ b[k,n].
template <typename C>
void gemm(const C* a, MatrixLayout la, const C* b, MatrixLayout lb, C* out, int64_t m, int64_t k, int64_t n) {
  OutMap<C> result(out, m, n);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum is zero
    result.setZero();
    return;
  }
  if (la.row_major) {
    gemm_with_a<C>(MatrixMap<C, Eigen::RowMajor>(a, m, k, Eigen::OuterStride<>(la.ld)), b, lb, k, n, result);
  } else {
    gemm_with_a<C>(MatrixMap<C, Eigen::ColMajor>(a, m, k, Eigen::OuterStride<>(la.ld)), b, lb, k, n, result);
  }
}

// When a's batch dims merge with its row dim into one strided dim (a batch of [m,k] matrices
// laid out as one tall [batch*m, k] matrix), the stride of that merged dim. Then a product
// against a shared 2-D b is a single GEMM, which runs faster than many small ones.
std::optional<int64_t> merged_row_stride(const Tensor& a) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (size, stride) of the non-trivial dims
  for (size_t d = 0; d + 1 < size_t(a.dim()); ++d) {
    if (a.shape()[d] != 1) dims.emplace_back(a.shape()[d], a.strides()[d]);
  }
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    if (dims[i].second != dims[i + 1].second * dims[i + 1].first) return std::nullopt;
  }
  return dims.empty() ? a.shape().back() : dims.back().second;
}

// t's strides over the broadcast batch dims (0 where t has no such dim or broadcasts it).
Shape batch_strides(const Tensor& t, const Shape& batch) {
  const size_t t_batch = size_t(t.dim()) - 2;
  const size_t lead = batch.size() - t_batch;
  Shape strides(batch.size(), 0);
  for (size_t d = 0; d < t_batch; ++d) {
    strides[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  }
  return strides;
}

// The broadcast shape of a @ b: [batch..., m, n].
Shape product_shape(const Tensor& a, const Tensor& b, const char* op) {
  const Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  const Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape shape = detail::broadcast_shapes(batch_a, batch_b, op);
  shape.push_back(a.shape()[size_t(a.dim()) - 2]);
  shape.push_back(b.shape().back());
  return shape;
}

// Batched Eigen product on float/double tensors of rank >= 2 with broadcast batch dims, into out
// (contiguous, of the broadcast shape).
template <typename C>
void matmul_eigen(const Tensor& a, const Tensor& b, Tensor& out) {
  const MatrixDims da = matrix_dims(a);
  const MatrixDims db = matrix_dims(b);
  const Shape batch(out.shape().begin(), out.shape().end() - 2);
  const int64_t m = da.rows, k = da.cols, n = db.cols;

  const MatrixLayout lb = *gemm_layout(db.rows, db.cols, db.row_stride, db.col_stride);
  if (b.dim() == 2) {
    const int64_t rows = shape_numel(batch) * m;
    const std::optional<int64_t> row_stride = merged_row_stride(a);
    const auto la = row_stride ? gemm_layout(rows, k, *row_stride, da.col_stride) : std::nullopt;
    if (la && la->row_major) {
      gemm(detail::cdata<C>(a), *la, detail::cdata<C>(b), lb, detail::mdata<C>(out), rows, k, n);
      return;
    }
  }
  const MatrixLayout la = *gemm_layout(m, k, da.row_stride, da.col_stride);
  Shape out_batch_strides(out.strides().begin(), out.strides().end() - 2);
  const std::array<Shape, 3> batch_layout = {out_batch_strides, batch_strides(a, batch), batch_strides(b, batch)};
  detail::StridedLoop<3> loop(batch, batch_layout);
  loop.for_each_run([&](const auto& offsets, int64_t count, const auto& strides) {
    for (int64_t i = 0; i < count; ++i) {
      gemm(detail::cdata<C>(a) + offsets[1] + i * strides[1], la, detail::cdata<C>(b) + offsets[2] + i * strides[2], lb,
           detail::mdata<C>(out) + offsets[0] + i * strides[0], m, k, n);
    }
  });
}

void check_matmul_args(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_cpu(a, op, "a");
  detail::check_cpu(b, op, "b");
  detail::check_same_dtype(a, b, op, "a", "b");
  detail::check_floating(a, op, "a");
  check<ShapeError>(a.dim() >= 2 && b.dim() >= 2, op, "a and b must have at least 2 dims, got shapes {} and {}",
                    shape_str(a.shape()), shape_str(b.shape()));
  check<ShapeError>(a.shape().back() == b.shape()[size_t(b.dim()) - 2], op,
                    "a's last dim ({}) must equal b's second-to-last dim ({}); shapes {} and {}", a.shape().back(),
                    b.shape()[size_t(b.dim()) - 2], shape_str(a.shape()), shape_str(b.shape()));
}

// A 16-bit operand widened to f32 in its own memory order. A transposed view (x @ W^T's W^T) is
// widened as the row-major tensor it views and transposed back: converting the view itself would
// write the copy transposed, element by element (80x slower for a [32000, 1024] lm_head), and
// GEMM reads the transposed result in place either way.
Tensor widened(const Tensor& t) {
  const int64_t d = t.dim();
  const bool transposed = t.strides()[size_t(d) - 2] == 1 && t.strides()[size_t(d) - 1] != 1;
  if (!transposed) return t.to(DType::F32);
  return t.transpose(d - 2, d - 1).to(DType::F32).transpose(d - 2, d - 1);
}

// out[rows, n] += bias[n] broadcast over rows, in out's (compute) dtype.
template <typename C>
void add_bias_rows(Tensor& out, const Tensor& bias) {
  const int64_t n = bias.numel();
  const int64_t rows = n == 0 ? 0 : out.numel() / n;
  Eigen::Matrix<C, 1, Eigen::Dynamic> bias_row(n);
  visit_dtype(bias.dtype(), [&]<typename B>() {
    const B* pb = detail::cdata<B>(bias);
    for (int64_t j = 0; j < n; ++j) bias_row[j] = C(pb[j * bias.strides()[0]]);
  });
  OutMap<C>(detail::mdata<C>(out), rows, n).rowwise() += bias_row;
}

void add_bias(Tensor& out, const Tensor& bias) {
  if (!bias.defined()) return;
  if (out.dtype() == DType::F64)
    add_bias_rows<double>(out, bias);
  else
    add_bias_rows<float>(out, bias);
}

// One row times a matrix, or a batch of them (bmm with one token per expert, as a decode step routes
// them): the matrix-vector kernel per batch. False, with nothing written, where the kernel does not
// take the product; its conditions are the same for every batch.
bool batched_gemv(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
  if (out.dim() == 2) return cpu::gemv(a, b, bias, out);
  if (out.dim() != 3 || a.dim() != 3 || b.dim() != 3 || out.size(1) != 1) return false;
  for (int64_t i = 0; i < out.size(0); ++i) {
    const Tensor ai = a.select(0, a.size(0) == 1 ? 0 : i), bi = b.select(0, b.size(0) == 1 ? 0 : i);
    if (!cpu::gemv(ai, bi, bias, out.select(0, i))) return false;
  }
  return true;
}

// a @ b (+ bias) in a's dtype: our matrix-vector kernel for (batches of) one row times a matrix,
// oneDNN for the other f32 and 16-bit products, f32 from widened operands where the host lacks a
// 16-bit kernel, Eigen for f64 (and what oneDNN cannot take).
Tensor matmul_compute(const Tensor& a_in, const Tensor& b_in, const Tensor& bias, const char* op) {
  cpu::kernel_threads();  // sets OpenMP's thread count before any kernel (Eigen's f64 GEMM too) reads it
  const Tensor a = gemm_readable(a_in), b = gemm_readable(b_in);
  Tensor out = Tensor::empty(product_shape(a, b, op), a.dtype());
  if (out.numel() == 0) return out;
  if (a.shape().back() == 0) {  // an empty sum is zero
    out = Tensor::zeros(out.shape(), dtype_size(a.dtype()) < 4 ? DType::F32 : a.dtype());
    add_bias(out, bias);
    return out.to(a.dtype());
  }
  if (a.dtype() != DType::F64) {
    const Tensor dense_bias = bias.defined() ? bias.contiguous() : bias;
    if (batched_gemv(a, b, dense_bias, out) || cpu::onednn_matmul(a, b, dense_bias, out)) return out;
    if (dtype_size(a.dtype()) < 4) {
      const Tensor bias32 = bias.defined() ? bias.to(DType::F32) : bias;
      return matmul_compute(widened(a), widened(b), bias32, op).to(a.dtype());
    }
  }
  if (a.dtype() == DType::F64)
    matmul_eigen<double>(a, b, out);
  else
    matmul_eigen<float>(a, b, out);
  add_bias(out, bias);
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "matmul").matmul(a, b);
  check_matmul_args(a, b, "matmul");
  return matmul_compute(a, b, Tensor(), "matmul");
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  if (on_device(a)) return device_kernels(a, "bmm").bmm(a, b);
  const char* op = "bmm";
  check_matmul_args(a, b, op);
  check<ShapeError>(a.dim() == 3 && b.dim() == 3 && a.shape()[0] == b.shape()[0], op,
                    "a and b must be 3-D with equal batch size, got shapes {} and {}", shape_str(a.shape()),
                    shape_str(b.shape()));
  return matmul_compute(a, b, Tensor(), op);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (on_device(x)) return device_kernels(x, "linear").linear(x, weight, bias);
  const char* op = "linear";
  detail::check_cpu(x, op, "x");
  detail::check_cpu(weight, op, "weight");
  detail::check_same_dtype(x, weight, op, "x", "weight");
  detail::check_floating(x, op, "x");
  check<ShapeError>(weight.dim() == 2, op, "weight must be 2-D [out, in], got shape {}", shape_str(weight.shape()));
  check<ShapeError>(x.dim() >= 1 && x.shape().back() == weight.shape()[1], op,
                    "x's last dim must equal weight's in-features {}; got x shape {}", weight.shape()[1],
                    shape_str(x.shape()));
  if (bias.defined()) {
    detail::check_cpu(bias, op, "bias");
    detail::check_same_dtype(x, bias, op, "x", "bias");
    check<ShapeError>(bias.dim() == 1 && bias.shape()[0] == weight.shape()[0], op, "bias must have shape [{}], got {}",
                      weight.shape()[0], shape_str(bias.shape()));
  }
  const Tensor x2 = x.dim() == 1 ? x.unsqueeze(0) : x;
  // weight^T is a [in, out] view with column stride 'in': GEMM reads it as column-major.
  const Tensor out = matmul_compute(x2, weight.transpose(0, 1), bias, op);
  return x.dim() == 1 ? out.squeeze(0) : out;
}

}  // namespace dtensor
