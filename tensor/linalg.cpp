// Matrix products: matmul (with broadcast batch dims), bmm, linear.
//
// Every product ends in Eigen's GEMM on Maps of the operands' memory. A 2-D operand whose
// rows or columns are contiguous maps directly, as a row-major or a column-major matrix with
// an outer stride; so x @ W^T reads W in place as a column-major matrix instead of copying the
// transpose. Only layouts GEMM cannot read (both strides > 1, or a stride-0 broadcast) are
// copied. 16-bit floats are widened to f32, multiplied and rounded once at the end.
//
// This file is compiled with GCC's generic tuning: -march=native on this AMD EPYC (Zen 4) makes
// GCC 12 tune for znver3, which schedules Eigen's f32 GEBP micro-kernel about 30% slower on one
// core ([512, 1024] @ [1024, 2816]^T: ~66 GFLOP/s against ~95 GFLOP/s generic-tuned; the same
// instructions are available either way). The pragma comes before every include so that all the
// Eigen code instantiated here gets it; other files keep the project's tuning.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("tune=generic")
#endif
#include "tensor/kernel_util.hpp"
#include "tensor/device_dispatch.hpp"
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
std::optional<MatrixLayout> gemm_layout(int64_t rows, int64_t cols, int64_t row_stride,
                                        int64_t col_stride) {
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
using MatrixMap = Eigen::Map<const Eigen::Matrix<C, Eigen::Dynamic, Eigen::Dynamic, Order>, 0,
                             Eigen::OuterStride<>>;
template <typename C>
using OutMap = Eigen::Map<Eigen::Matrix<C, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

template <typename C, int OrderA>
void gemm_with_a(const MatrixMap<C, OrderA>& a, const C* b, MatrixLayout lb, int64_t k, int64_t n,
                 OutMap<C>& out) {
  if (lb.row_major) {
    out.noalias() = a * MatrixMap<C, Eigen::RowMajor>(b, k, n, Eigen::OuterStride<>(lb.ld));
  } else {
    out.noalias() = a * MatrixMap<C, Eigen::ColMajor>(b, k, n, Eigen::OuterStride<>(lb.ld));
  }
}

// out[m,n] (contiguous) = a[m,k] @ b[k,n].
template <typename C>
void gemm(const C* a, MatrixLayout la, const C* b, MatrixLayout lb, C* out, int64_t m, int64_t k,
          int64_t n) {
  OutMap<C> result(out, m, n);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum is zero
    result.setZero();
    return;
  }
  if (la.row_major) {
    gemm_with_a<C>(MatrixMap<C, Eigen::RowMajor>(a, m, k, Eigen::OuterStride<>(la.ld)), b, lb, k,
                   n, result);
  } else {
    gemm_with_a<C>(MatrixMap<C, Eigen::ColMajor>(a, m, k, Eigen::OuterStride<>(la.ld)), b, lb, k,
                   n, result);
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

// Batched product on float/double tensors of rank >= 2 with broadcast batch dims.
template <typename C>
Tensor matmul_native(const Tensor& a_in, const Tensor& b_in, const char* op) {
  const Tensor a = gemm_readable(a_in);
  const Tensor b = gemm_readable(b_in);
  const MatrixDims da = matrix_dims(a);
  const MatrixDims db = matrix_dims(b);
  const Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  const Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape out_shape = detail::broadcast_shapes(batch_a, batch_b, op);
  const Shape batch = out_shape;
  out_shape.push_back(da.rows);
  out_shape.push_back(db.cols);
  Tensor out = Tensor::empty(out_shape, dtype_of<C>);
  const int64_t m = da.rows, k = da.cols, n = db.cols;

  const MatrixLayout lb = *gemm_layout(db.rows, db.cols, db.row_stride, db.col_stride);
  if (b.dim() == 2) {
    const int64_t rows = shape_numel(batch) * m;
    const std::optional<int64_t> row_stride = merged_row_stride(a);
    const auto la = row_stride ? gemm_layout(rows, k, *row_stride, da.col_stride) : std::nullopt;
    if (la && la->row_major) {
      gemm(detail::cdata<C>(a), *la, detail::cdata<C>(b), lb, detail::mdata<C>(out), rows, k, n);
      return out;
    }
  }
  const MatrixLayout la = *gemm_layout(m, k, da.row_stride, da.col_stride);
  Shape out_batch_strides(out.strides().begin(), out.strides().end() - 2);
  const std::array<Shape, 3> batch_layout = {out_batch_strides, batch_strides(a, batch),
                                             batch_strides(b, batch)};
  detail::StridedLoop<3> loop(batch, batch_layout);
  loop.for_each_run([&](const auto& offsets, int64_t count, const auto& strides) {
    for (int64_t i = 0; i < count; ++i) {
      gemm(detail::cdata<C>(a) + offsets[1] + i * strides[1], la,
           detail::cdata<C>(b) + offsets[2] + i * strides[2], lb,
           detail::mdata<C>(out) + offsets[0] + i * strides[0], m, k, n);
    }
  });
  return out;
}

void check_matmul_args(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_cpu(a, op, "a");
  detail::check_cpu(b, op, "b");
  detail::check_same_dtype(a, b, op, "a", "b");
  detail::check_floating(a, op, "a");
  check<ShapeError>(a.dim() >= 2 && b.dim() >= 2, op,
                    "a and b must have at least 2 dims, got shapes {} and {}", shape_str(a.shape()),
                    shape_str(b.shape()));
  check<ShapeError>(a.shape().back() == b.shape()[size_t(b.dim()) - 2], op,
                    "a's last dim ({}) must equal b's second-to-last dim ({}); shapes {} and {}",
                    a.shape().back(), b.shape()[size_t(b.dim()) - 2], shape_str(a.shape()),
                    shape_str(b.shape()));
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

// The product in the compute type: f32/f64 as they are, 16-bit floats widened to f32.
Tensor matmul_compute(const Tensor& a, const Tensor& b, const char* op) {
  switch (a.dtype()) {
    case DType::F64: return matmul_native<double>(a, b, op);
    case DType::F32: return matmul_native<float>(a, b, op);
    default: return matmul_native<float>(widened(a), widened(b), op);
  }
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

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  DTENSOR_DISPATCH_CUDA(a, matmul(a, b));
  check_matmul_args(a, b, "matmul");
  return matmul_compute(a, b, "matmul").to(a.dtype());
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  DTENSOR_DISPATCH_CUDA(a, bmm(a, b));
  const char* op = "bmm";
  check_matmul_args(a, b, op);
  check<ShapeError>(a.dim() == 3 && b.dim() == 3 && a.shape()[0] == b.shape()[0], op,
                    "a and b must be 3-D with equal batch size, got shapes {} and {}",
                    shape_str(a.shape()), shape_str(b.shape()));
  return matmul_compute(a, b, op).to(a.dtype());
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  DTENSOR_DISPATCH_CUDA(x, linear(x, weight, bias));
  const char* op = "linear";
  detail::check_cpu(x, op, "x");
  detail::check_cpu(weight, op, "weight");
  detail::check_same_dtype(x, weight, op, "x", "weight");
  detail::check_floating(x, op, "x");
  check<ShapeError>(weight.dim() == 2, op, "weight must be 2-D [out, in], got shape {}",
                    shape_str(weight.shape()));
  check<ShapeError>(x.dim() >= 1 && x.shape().back() == weight.shape()[1], op,
                    "x's last dim must equal weight's in-features {}; got x shape {}",
                    weight.shape()[1], shape_str(x.shape()));
  if (bias.defined()) {
    detail::check_cpu(bias, op, "bias");
    detail::check_same_dtype(x, bias, op, "x", "bias");
    check<ShapeError>(bias.dim() == 1 && bias.shape()[0] == weight.shape()[0], op,
                      "bias must have shape [{}], got {}", weight.shape()[0],
                      shape_str(bias.shape()));
  }
  const Tensor x2 = x.dim() == 1 ? x.unsqueeze(0) : x;
  // weight^T is a [in, out] view with column stride 'in': GEMM reads it as column-major.
  Tensor out = matmul_compute(x2, weight.transpose(0, 1), op);
  if (bias.defined()) {
    if (out.dtype() == DType::F64) add_bias_rows<double>(out, bias);
    else add_bias_rows<float>(out, bias);
  }
  out = out.to(x.dtype());
  return x.dim() == 1 ? out.squeeze(0) : out;
}

}  // namespace dtensor
