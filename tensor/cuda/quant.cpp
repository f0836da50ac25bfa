#include "tensor/cuda/quant.hpp"

#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/cuda/quant_launch.hpp"
#include "tensor/ops.hpp"

#include <limits>

namespace dtensor::cuda {

namespace {

kernels::QuantRows rows_of(const QuantizedMatrix& w) {
  return {kernels::QuantKind(uint8_t(w.format())),
          static_cast<const uint8_t*>(w.data().data_ptr()),
          int64_t(w.data().nbytes()) / w.rows(),
          w.scales().defined() ? static_cast<const float*>(w.scales().data_ptr()) : nullptr,
          w.rows(),
          w.cols()};
}

}  // namespace

Tensor quantized_linear(const Tensor& x, const QuantizedMatrix& w, const QuantOptions& options, const Tensor& bias) {
  constexpr const char* op = "quantized_linear";
  const Device device = x.device();
  check_device_exists(device, op);
  DeviceGuard guard(device.index);
  const Tensor x2 = x.reshape({-1, w.cols()}).to(DType::F32).contiguous();
  const int64_t m = x2.size(0);
  Tensor out = Tensor::empty({m, w.rows()}, DType::F32, device);
  if (m > 0) {
    const cudaStream_t stream = current_stream(device.index);
    const auto* xp = static_cast<const float*>(x2.data_ptr());
    auto* yp = static_cast<float*>(out.data_ptr());
    if (w.format() == QuantFormat::Int8 && options.outlier_threshold > 0.0) {
      const Tensor outlier = Tensor::empty({w.cols()}, DType::U8, device);
      const Tensor xq = Tensor::empty({m, w.cols()}, DType::I8, device);
      const Tensor x_scale = Tensor::empty({m}, DType::F32, device);
      kernels::int8_outlier_matmul(rows_of(w), xp, m, float(options.outlier_threshold),
                                   static_cast<uint8_t*>(outlier.data_ptr()), static_cast<int8_t*>(xq.data_ptr()),
                                   static_cast<float*>(x_scale.data_ptr()), yp, stream);
    } else {
      kernels::quant_matmul(rows_of(w), xp, m, yp, stream);
    }
    check_launch(op);
  }
  if (bias.defined()) out = add(out, bias.to(DType::F32));
  Shape shape = x.shape();
  shape.back() = w.rows();
  return out.to(x.dtype()).view(shape);
}

Tensor quantized_rows(const QuantizedMatrix& w, const Tensor& ids, DType dtype) {
  constexpr const char* op = "dequantize_rows";
  const Device device = w.device();
  check_device_exists(device, op);
  DeviceGuard guard(device.index);
  const Tensor flat = ids.to(DType::I64).contiguous();
  Tensor out = Tensor::empty({ids.numel(), w.cols()}, DType::F32, device);
  Shape shape = ids.shape();
  shape.push_back(w.cols());
  if (ids.numel() == 0) return out.to(dtype).view(shape);
  // No id is int64's minimum, so it marks "every id in range".
  constexpr int64_t kNoBadId = std::numeric_limits<int64_t>::min();
  Tensor bad = Tensor::full({1}, double(kNoBadId), DType::I64, device);
  kernels::quant_rows(rows_of(w), static_cast<const int64_t*>(flat.data_ptr()), ids.numel(),
                      static_cast<float*>(out.data_ptr()), static_cast<int64_t*>(bad.data_ptr()),
                      current_stream(device.index));
  check_launch(op);
  const int64_t bad_id = bad.item<int64_t>();
  check<ValueError>(bad_id == kNoBadId, op, "id {} out of range [0, {})", bad_id, w.rows());
  return out.to(dtype).view(shape);
}

}  // namespace dtensor::cuda
