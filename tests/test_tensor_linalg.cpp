// Matrix products (CPU kernels) against naive references;
// shared helpers in tensor_ops_reference.hpp.
#include "tensor_ops_reference.hpp"

// Matrix products -------------------------------------------------------------------------------

namespace {

// GCC 12 at -O3 gives a false -Wfree-nonheap-object on the Shape temporary built from
// a.shape()'s iterators below, depending on how much it inlines in this translation unit.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#endif

// Naive batched product on read() values: a [B..., m, k] x b [B..., k, n] with equal batch
// (or b 2-D, shared). Also returns sum |a||b| per element, the scale of rounding error.
std::pair<std::vector<double>, std::vector<double>> ref_matmul(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = read(a), vb = read(b);
  const int64_t m = a.shape()[a.shape().size() - 2], k = a.shape().back(), n = b.shape().back();
  const int64_t batches = count(Shape(a.shape().begin(), a.shape().end() - 2));
  const bool shared_b = b.dim() == 2;
  std::vector<double> out, scale;
  for (int64_t p = 0; p < batches; ++p) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, magnitude = 0;
        for (int64_t q = 0; q < k; ++q) {
          const double x = va[size_t((p * m + i) * k + q)];
          const double y = vb[size_t(((shared_b ? 0 : p) * k + q) * n + j)];
          sum += x * y;
          magnitude += std::abs(x * y);
        }
        out.push_back(sum);
        scale.push_back(magnitude);
      }
    }
  }
  return {out, scale};
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

Tol matmul_tol(DType dt) {
  switch (dt) {
    case DType::F64:
      return {1e-14, 0};
    case DType::F32:
      return {1e-6, 0};
    case DType::BF16:
      return {8e-3, 0};
    default:
      return {2e-3, 0};
  }
}

}  // namespace

TEST_CASE("matmul 2-D matches the naive product for every layout, including empty dims") {
  const std::vector<std::array<int64_t, 3>> sizes = {{5, 7, 3}, {1, 4, 6}, {6, 1, 2},
                                                     {3, 0, 4}, {0, 3, 2}, {33, 70, 19}};
  const Layout layouts[] = {Layout::Contiguous, Layout::Transposed, Layout::Narrowed};
  for (DType dt : kFloatDTypes) {
    for (const auto& [m, k, n] : sizes) {
      for (Layout la : layouts) {
        for (Layout lb : layouts) {
          INFO(dtype_name(dt) << " m=" << m << " k=" << k << " n=" << n << " a " << layout_name(la) << " b "
                              << layout_name(lb));
          const Tensor a = make({m, k}, dt, la, 1), b = make({k, n}, dt, lb, 2);
          const auto [want, scale] = ref_matmul(a, b);
          const Tensor got = matmul(a, b);
          CHECK(got.dtype() == dt);
          check_close(got, {m, n}, want, matmul_tol(dt), scale);
        }
      }
    }
  }
}

TEST_CASE("batched matmul and bmm: per-batch, folded and strided batches") {
  for (DType dt : kFloatDTypes) {
    INFO(dtype_name(dt));
    // [b,m,k] x [b,k,n], with a transposed inner layout and a permuted batch layout.
    const Tensor a = make({3, 4, 5}, dt, Layout::Transposed, 1);
    const Tensor b = make({3, 5, 2}, dt, Layout::Narrowed, 2);
    auto [want, scale] = ref_matmul(a, b);
    check_close(matmul(a, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    check_close(bmm(a, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    const Tensor permuted = filled({4, 3, 5}, dt, 3, Values::Any).permute({1, 0, 2});
    std::tie(want, scale) = ref_matmul(permuted, b);
    check_close(matmul(permuted, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    // [b,m,k] x [k,n]: contiguous a folds into one GEMM; the permuted one cannot.
    const Tensor w = make({5, 6}, dt, Layout::Transposed, 4);
    for (const Tensor& x : {make({3, 4, 5}, dt, Layout::Contiguous, 5), permuted}) {
      std::tie(want, scale) = ref_matmul(x, w);
      check_close(matmul(x, w), {3, 4, 6}, want, matmul_tol(dt), scale);
    }
    check_close(matmul(make({2, 0, 5}, dt, Layout::Contiguous), w), {2, 0, 6}, {}, {0, 0});
    // Broadcast batch dims: a 2-D a against every matrix of b, and an expanded batch.
    const Tensor shared = make({4, 5}, dt, Layout::Transposed, 6);
    want.clear();
    scale.clear();
    for (int64_t p = 0; p < 3; ++p) {
      const auto [w_p, s_p] = ref_matmul(shared, b.select(0, p));
      want.insert(want.end(), w_p.begin(), w_p.end());
      scale.insert(scale.end(), s_p.begin(), s_p.end());
    }
    check_close(matmul(shared, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    check_close(matmul(shared.unsqueeze(0).expand({3, 4, 5}), b), {3, 4, 2}, want, matmul_tol(dt), scale);
  }
}

TEST_CASE("linear computes x @ W^T + b on strided weights and biases") {
  for (DType dt : kFloatDTypes) {
    for (Layout lx : {Layout::Contiguous, Layout::Narrowed, Layout::Transposed}) {
      for (Layout lw : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed}) {
        INFO(dtype_name(dt) << " x " << layout_name(lx) << " weight " << layout_name(lw));
        const Tensor x = make({2, 3, 4}, dt, lx, 1);
        const Tensor weight = make({5, 4}, dt, lw, 2);
        const Tensor bias = make({5}, dt, Layout::Narrowed, 3);
        const std::vector<double> vx = read(x), vw = read(weight), vb = read(bias);
        std::vector<double> want, want_bias, scale;
        for (int64_t r = 0; r < 6; ++r) {
          for (int64_t o = 0; o < 5; ++o) {
            double sum = 0, magnitude = std::abs(vb[size_t(o)]);
            for (int64_t i = 0; i < 4; ++i) {
              sum += vx[size_t(r * 4 + i)] * vw[size_t(o * 4 + i)];
              magnitude += std::abs(vx[size_t(r * 4 + i)] * vw[size_t(o * 4 + i)]);
            }
            want.push_back(sum);
            want_bias.push_back(sum + vb[size_t(o)]);
            scale.push_back(magnitude);
          }
        }
        check_close(linear(x, weight), {2, 3, 5}, want, matmul_tol(dt), scale);
        check_close(linear(x, weight, bias), {2, 3, 5}, want_bias, matmul_tol(dt), scale);
        const std::vector<double> first(want_bias.begin(), want_bias.begin() + 5);
        check_close(linear(x.select(0, 0).select(0, 0), weight, bias), {5}, first, matmul_tol(dt),
                    std::vector<double>(scale.begin(), scale.begin() + 5));
      }
    }
  }
}

TEST_CASE("matrix products reject bad shapes and dtypes") {
  const Tensor a = make({2, 3}, DType::F32, Layout::Contiguous);
  const Tensor b = make({4, 5}, DType::F32, Layout::Contiguous);
  expect_error<ShapeError>([&] { matmul(a, b); }, {"[matmul]", "[2, 3]", "[4, 5]"});
  expect_error<ShapeError>([&] { matmul(a, make({3}, DType::F32, Layout::Contiguous)); }, {"[matmul]", "[3]"});
  expect_error<DTypeError>([&] { matmul(a, b.to(DType::F64)); }, {"[matmul]", "f32", "f64"});
  const Tensor i = make({2, 2}, DType::I32, Layout::Contiguous);
  expect_error<DTypeError>([&] { matmul(i, i); }, {"[matmul]", "i32"});
  expect_error<ShapeError>([&] { bmm(a, a.transpose(0, 1)); }, {"[bmm]", "3-D"});
  expect_error<ShapeError>(
      [&] {
        bmm(make({2, 2, 3}, DType::F32, Layout::Contiguous), make({3, 3, 2}, DType::F32, Layout::Contiguous));
      },
      {"[bmm]", "[2, 2, 3]", "[3, 3, 2]"});
  expect_error<ShapeError>([&] { linear(a, b); }, {"[linear]", "[2, 3]"});
  expect_error<ShapeError>([&] { linear(a, b.narrow(1, 0, 3), make({5}, DType::F32, Layout::Contiguous)); },
                           {"[linear]", "bias", "[4]", "[5]"});
}
