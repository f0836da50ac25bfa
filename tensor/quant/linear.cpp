// quantized_linear on the CPU: activations prepared once per call, then the rows of W split into
// one contiguous band per kernel thread (the way tensor/cpu/gemv.cpp streams a decode Linear).
#include "tensor/cpu/threads.hpp"
#include "tensor/device_kernels.hpp"
#include "tensor/error.hpp"
#include "tensor/ops.hpp"
#include "tensor/quant/blocks.hpp"
#include "tensor/quant/kernels.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace dtensor {

namespace {

constexpr const char* kOp = "quantized_linear";

// Runs body(row_begin, row_end) over [0, rows) in one band per thread; small products stay on one.
template <typename Body>
void for_row_bands(int64_t rows, int64_t work, const Body& body) {
  const bool parallel = work >= (int64_t(1) << 16);
  const int threads = parallel ? cpu::kernel_threads() : 1;
#pragma omp parallel num_threads(threads) if (parallel)
  {
    const int64_t count = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t begin = rows * id / count, end = rows * (id + 1) / count;
    if (begin < end) body(begin, end);
  }
}

quant::WeightRows weight_rows(const QuantizedMatrix& w) {
  return {w.format(), static_cast<const uint8_t*>(w.data().data_ptr()), w.data().size(1),
          w.scales().defined() ? w.scales().data<float>() : nullptr, w.cols()};
}

// out [m, rows] = x [m, cols] W^T, x in f32 (kept in f32: weight-only quantization).
void weight_only_product(const float* x, int64_t m, const QuantizedMatrix& w, float* out) {
  const int64_t cols = w.cols(), blocks = cols / quant::kGgmlBlock;
  std::vector<float> prepared, sums;
  quant::Activations a{x, m, nullptr};
  if (w.format() == QuantFormat::NF4) {
    prepared.resize(size_t(m * cols));
    for (int64_t i = 0; i < m; ++i) quant::prepare_nf4_activations(x + i * cols, cols, prepared.data() + i * cols);
    a.x = prepared.data();
  } else if (w.format() == QuantFormat::Q4_0 || w.format() == QuantFormat::Q4_1) {
    sums.resize(size_t(m * blocks));
    for (int64_t i = 0; i < m * blocks; ++i) {
      float s = 0.0f;
      for (int64_t j = 0; j < quant::kGgmlBlock; ++j) s += x[i * quant::kGgmlBlock + j];
      sums[size_t(i)] = s;
    }
    a.block_sums = sums.data();
  }
  const quant::WeightRows rows = weight_rows(w);
  const quant::RowsKernel kernel = quant::rows_kernel(quant::active_isa(), w.format());
  for_row_bands(w.rows(), m * w.rows() * cols,
                [&](int64_t begin, int64_t end) { kernel(rows, a, begin, end, out, w.rows()); });
}

// The ggml formats against x rounded to q8_0 blocks: integer dot products per block.
void int8_activation_product(const float* x, int64_t m, const QuantizedMatrix& w, float* out) {
  const int64_t cols = w.cols(), blocks = cols / quant::kGgmlBlock;
  std::vector<int8_t> q(static_cast<size_t>(m * cols));
  std::vector<float> scale(static_cast<size_t>(m * blocks)), sums(static_cast<size_t>(m * blocks));
  std::vector<int32_t> q_sums(static_cast<size_t>(m * blocks));
  for (int64_t i = 0; i < m; ++i) {
    quant::quantize_activations_q8(x + i * cols, cols, q.data() + i * cols, scale.data() + i * blocks,
                                   sums.data() + i * blocks, q_sums.data() + i * blocks);
  }
  const quant::Int8Activations a{q.data(), scale.data(), sums.data(), q_sums.data(), m};
  const quant::WeightRows rows = weight_rows(w);
  const quant::Int8RowsKernel kernel = quant::int8_rows_kernel(quant::active_isa(), w.format());
  for_row_bands(w.rows(), m * w.rows() * cols,
                [&](int64_t begin, int64_t end) { kernel(rows, a, begin, end, out, w.rows()); });
}

// LLM.int8 (bitsandbytes' MatMul8bitLt): outlier columns in f32 against the dequantized weight
// columns, the rest as an int8 x int8 product scaled by x's row scale and W's row scale.
void int8_outlier_product(const float* x, int64_t m, const QuantizedMatrix& w, float threshold, float* out) {
  const int64_t cols = w.cols(), rows = w.rows();
  std::vector<int64_t> outliers;
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t i = 0; i < m; ++i) {
      if (std::fabs(x[i * cols + c]) >= threshold) {
        outliers.push_back(c);
        break;
      }
    }
  }
  std::vector<char> is_outlier(size_t(cols), 0);
  for (int64_t c : outliers) is_outlier[size_t(c)] = 1;
  std::vector<int8_t> xq(size_t(m * cols), 0);
  std::vector<float> x_scale(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    const float* row = x + i * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) amax = is_outlier[size_t(c)] ? amax : std::max(amax, std::fabs(row[c]));
    x_scale[size_t(i)] = amax / 127.0f;
    const float inv = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      if (!is_outlier[size_t(c)]) xq[size_t(i * cols + c)] = int8_t(std::nearbyintf(row[c] * inv));
    }
  }
  std::vector<int32_t> acc(size_t(m * rows));
  const auto* wq = static_cast<const int8_t*>(w.data().data_ptr());
  const float* w_scale = w.scales().data<float>();
  const quant::Int8DotKernel dot = quant::int8_dot_kernel(quant::active_isa());
  for_row_bands(rows, m * rows * cols, [&](int64_t begin, int64_t end) {
    dot(xq.data(), m, wq, cols, cols, begin, end, acc.data(), rows);
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t i = 0; i < m; ++i) {
        float outlier_sum = 0.0f;
        for (int64_t c : outliers) outlier_sum += x[i * cols + c] * float(wq[r * cols + c]);
        out[i * rows + r] = (float(acc[size_t(i * rows + r)]) * x_scale[size_t(i)] + outlier_sum) * w_scale[r];
      }
    }
  });
}

void check_arguments(const Tensor& x, const QuantizedMatrix& w, const QuantOptions& options, const Tensor& bias) {
  check<ValueError>(w.defined(), kOp, "weight is an undefined quantized matrix");
  check<DTypeError>(x.dtype() == DType::F32 || x.dtype() == DType::BF16, kOp, "x must be f32 or bf16, got {}",
                    dtype_name(x.dtype()));
  // Not check() where the message formats a shape: its arguments are built even when it passes,
  // and this runs for every Linear of every token.
  if (x.dim() < 1 || x.size(-1) != w.cols())
    fail<ShapeError>(kOp, "x {} does not end in the weight's in features {}", shape_str(x.shape()), w.cols());
  check<ValueError>(options.outlier_threshold >= 0.0 && std::isfinite(options.outlier_threshold), kOp,
                    "outlier_threshold must be finite and >= 0, got {}", options.outlier_threshold);
  check<ValueError>(options.outlier_threshold == 0.0 || w.format() == QuantFormat::Int8, kOp,
                    "outlier_threshold applies to int8 weights only, not {}", quant_format_name(w.format()));
  if (bias.defined()) {
    if (bias.dim() != 1 || bias.size(0) != w.rows())
      fail<ShapeError>(kOp, "bias {} must be [{}]", shape_str(bias.shape()), w.rows());
    check<DTypeError>(bias.dtype() == x.dtype(), kOp, "bias dtype {} differs from x's {}", dtype_name(bias.dtype()),
                      dtype_name(x.dtype()));
    check<DeviceError>(bias.device() == x.device(), kOp, "bias on {} but x on {}", bias.device(), x.device());
  }
  check<DeviceError>(x.device() == w.device(), kOp, "x on {} but the weight on {}", x.device(), w.device());
}

}  // namespace

Tensor quantized_linear(const Tensor& x, const QuantizedMatrix& w, const QuantOptions& options, const Tensor& bias) {
  check_arguments(x, w, options, bias);
  if (on_device(x)) return device_kernels(x, kOp).quantized_linear(x, w, options, bias);
  const int64_t cols = w.cols(), rows = w.rows();
  const Tensor x2 = x.reshape({-1, cols}).to(DType::F32).contiguous();
  const int64_t m = x2.size(0);
  Tensor out = Tensor::empty({m, rows}, DType::F32);
  if (m > 0) {
    if (w.format() == QuantFormat::Int8 && options.outlier_threshold > 0.0) {
      int8_outlier_product(x2.data<float>(), m, w, float(options.outlier_threshold), out.data<float>());
    } else if (w.format() != QuantFormat::Int8 && w.format() != QuantFormat::NF4 && options.quantize_activations) {
      int8_activation_product(x2.data<float>(), m, w, out.data<float>());
    } else {
      weight_only_product(x2.data<float>(), m, w, out.data<float>());
    }
  }
  if (bias.defined()) out = add(out, bias.to(DType::F32));
  Shape shape = x.shape();
  shape.back() = rows;
  return out.to(x.dtype()).view(shape);
}

}  // namespace dtensor
