// layer_norm and rms_norm (CPU kernels) against straightforward double references over the last
// dim; shared helpers in tensor_ops_reference.hpp.
#include "tensor_ops_reference.hpp"

namespace {

// The rows of the last dim of `x` (read in logical order) mapped by `row`.
std::vector<double> by_rows(const Tensor& x, const std::function<void(const double*, double*, int64_t)>& row) {
  const std::vector<double> v = read(x);
  std::vector<double> out(v.size());
  const int64_t n = x.shape().back();
  for (size_t start = 0; n > 0 && start < v.size(); start += size_t(n)) row(&v[start], &out[start], n);
  return out;
}

std::vector<double> ref_layer_norm(const Tensor& x, const std::vector<double>& w, const std::vector<double>& b,
                                   double eps) {
  return by_rows(x, [&](const double* in, double* out, int64_t n) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += in[i] / double(n);
    for (int64_t i = 0; i < n; ++i) var += (in[i] - mean) * (in[i] - mean) / double(n);
    for (int64_t i = 0; i < n; ++i) {
      out[i] =
          (in[i] - mean) / std::sqrt(var + eps) * (w.empty() ? 1.0 : w[size_t(i)]) + (b.empty() ? 0.0 : b[size_t(i)]);
    }
  });
}

std::vector<double> ref_rms_norm(const Tensor& x, const std::vector<double>& w, double eps) {
  return by_rows(x, [&](const double* in, double* out, int64_t n) {
    double squares = 0;
    for (int64_t i = 0; i < n; ++i) squares += in[i] * in[i];
    for (int64_t i = 0; i < n; ++i) out[i] = in[i] / std::sqrt(squares / double(n) + eps) * w[size_t(i)];
  });
}

// A few roundings of the compute type (f32 for 16-bit inputs) plus the rounding on store.
Tol norm_tol(DType dt) {
  switch (dt) {
    case DType::F64:
      return {1e-12, 1e-12};
    case DType::F32:
      return {1e-5, 1e-5};
    case DType::BF16:
      return {1e-2, 1e-2};
    default:
      return {2e-3, 2e-3};
  }
}

}  // namespace

TEST_CASE("layer_norm and rms_norm match the reference over the last dim", "[norm]") {
  const double eps = 1e-5;
  for (DType dt : kFloatDTypes) {
    for (const Shape& shape : {Shape{4, 6}, Shape{2, 3, 5}, Shape{7}, Shape{3, 1}}) {
      for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed}) {
        INFO(dtype_name(dt) << " " << shape_str(shape) << " " << layout_name(layout));
        const Tensor x = make(shape, dt, layout, 3);
        const Tensor w = make({shape.back()}, dt, Layout::Contiguous, 4);
        const Tensor b = make({shape.back()}, dt, Layout::Contiguous, 5);
        check_close(layer_norm(x, w, b, eps), shape, ref_layer_norm(x, read(w), read(b), eps), norm_tol(dt));
        check_close(layer_norm(x, w, Tensor(), eps), shape, ref_layer_norm(x, read(w), {}, eps), norm_tol(dt));
        check_close(layer_norm(x, Tensor(), Tensor(), eps), shape, ref_layer_norm(x, {}, {}, eps), norm_tol(dt));
        check_close(rms_norm(x, w, eps), shape, ref_rms_norm(x, read(w), eps), norm_tol(dt));
      }
    }
  }
}

TEST_CASE("norms keep their dtype and handle constant rows and empty tensors", "[norm]") {
  // A constant row has zero variance: layer_norm gives bias exactly, rms_norm x / sqrt(x^2+eps).
  const Tensor x = from_values({2, 3}, DType::F64, {2, 2, 2, 0, 0, 0});
  const Tensor w = from_values({3}, DType::F64, {1, 2, 3});
  const Tensor b = from_values({3}, DType::F64, {0.5, -1, 4});
  check_close(layer_norm(x, w, b, 1e-5), {2, 3}, {0.5, -1, 4, 0.5, -1, 4}, {0, 0});
  check_close(rms_norm(x, w, 0.0), {2, 3}, {1, 2, 3, std::nan(""), std::nan(""), std::nan("")}, {1e-15, 0});
  CHECK(layer_norm(x.to(DType::BF16), w.to(DType::BF16), b.to(DType::BF16), 1e-5).dtype() == DType::BF16);
  CHECK(rms_norm(Tensor::empty({0, 4}, DType::F32), Tensor::zeros({4}, DType::F32), 1e-6).shape() == Shape{0, 4});
}

TEST_CASE("bad norm arguments raise typed errors naming the op", "[norm][errors]") {
  const Tensor x = make({3, 4}, DType::F32, Layout::Contiguous);
  const Tensor w = make({4}, DType::F32, Layout::Contiguous);
  expect_error<ShapeError>([&] { layer_norm(x, make({3}, DType::F32, Layout::Contiguous), w, 1e-5); },
                           {"layer_norm", "weight", "[4]"});
  expect_error<ShapeError>(
      [&] {
        layer_norm(x, w, make({4, 1}, DType::F32, Layout::Contiguous), 1e-5);
      },
      {"layer_norm", "bias"});
  expect_error<ShapeError>([&] { rms_norm(x, make({5}, DType::F32, Layout::Contiguous), 1e-5); },
                           {"rms_norm", "weight"});
  expect_error<DTypeError>([&] { rms_norm(x, w.to(DType::F64), 1e-5); }, {"rms_norm", "weight"});
  expect_error<DTypeError>([&] { rms_norm(x.to(DType::I64), w.to(DType::I64), 1e-5); }, {"rms_norm", "x"});
  expect_error<ShapeError>([&] { layer_norm(Tensor::full({}, 1.0, DType::F32), Tensor(), Tensor(), 1e-5); },
                           {"layer_norm"});
}
