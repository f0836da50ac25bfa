// The GEMM family on the CPU (oneDNN for f32 / bf16 / f16, Eigen for f64) against naive f64
// products of the same inputs: odd shapes (1 x K, K not a multiple of 16), transposed, narrowed
// and batch-narrowed views, broadcast batches; the 16-bit fallback; the primitive cache.
#include "tensor_ops_reference.hpp"

#include "tensor/cpu/gemv.hpp"
#include "tensor/cpu/onednn_gemm.hpp"

namespace {

// Naive product of a [batch, m, k] and b [batch or 1, k, n] (3-D views), and sum |a||b| per element.
struct Reference {
  std::vector<double> values, scale;
};
Reference naive(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = read(a), vb = read(b);
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  Reference r;
  for (int64_t p = 0; p < batch; ++p) {
    const int64_t pb = b.size(0) == 1 ? 0 : p;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, magnitude = 0;
        for (int64_t q = 0; q < k; ++q) {
          const double x = va[size_t((p * m + i) * k + q)], y = vb[size_t((pb * k + q) * n + j)];
          sum += x * y;
          magnitude += std::abs(x * y);
        }
        r.values.push_back(sum);
        r.scale.push_back(magnitude);
      }
    }
  }
  return r;
}

// f32 accumulation over k terms, then one rounding into the dtype: relative to sum |a||b|.
Tol gemm_tol(DType dt, int64_t k) {
  const double accumulate = double(k) * 6e-8;
  switch (dt) {
    case DType::F64:
      return {1e-14, 0};
    case DType::F32:
      return {1e-7 + accumulate, 0};
    case DType::BF16:
      return {4e-3 + accumulate, 0};
    default:
      return {5e-4 + accumulate, 0};
  }
}

Tensor as_3d(const Tensor& t) { return t.dim() == 2 ? t.unsqueeze(0) : t; }

}  // namespace

TEST_CASE("GEMM family: odd shapes and views in every float dtype against the f64 product") {
  const std::vector<std::array<int64_t, 3>> sizes = {
      {1, 1000, 33}, {1, 37, 1}, {17, 37, 29}, {64, 129, 70}, {3, 16, 5}};
  const Layout layouts[] = {Layout::Contiguous, Layout::Transposed, Layout::Narrowed};
  for (DType dt : kFloatDTypes) {
    for (const auto& [m, k, n] : sizes) {
      for (Layout la : layouts) {
        for (Layout lb : layouts) {
          INFO(dtype_name(dt) << " m=" << m << " k=" << k << " n=" << n << " a " << layout_name(la) << " b "
                              << layout_name(lb));
          const Tensor a = make({m, k}, dt, la, 1), b = make({k, n}, dt, lb, 2);
          const Reference want = naive(as_3d(a), as_3d(b));
          check_close(matmul(a, b), {m, n}, want.values, gemm_tol(dt, k), want.scale);
          // linear reads weight [n, k]: b^T is a transposed view of b's memory.
          check_close(linear(a, b.transpose(0, 1)), {m, n}, want.values, gemm_tol(dt, k), want.scale);
        }
      }
    }
  }
}

TEST_CASE("GEMM family: the experts' bmm on batch-narrowed transposed weights, broadcast 4-D batches") {
  for (DType dt : kFloatDTypes) {
    INFO(dtype_name(dt));
    // Experts: x [E, tokens, hidden] @ W[e0:e0+E]^T with W [experts, inter, hidden] read in place.
    const Tensor x = make({4, 8, 37}, dt, Layout::Narrowed, 3);
    const Tensor w = filled({6, 29, 37}, dt, 4, Values::Any).narrow(0, 1, 4).transpose(1, 2);
    const Reference want = naive(x, w.contiguous());
    check_close(bmm(x, w), {4, 8, 29}, want.values, gemm_tol(dt, 37), want.scale);
    // One token per expert, as a decode step routes them: the matrix-vector kernel per expert.
    const Tensor x1 = x.narrow(1, 2, 1);
    const Reference want1 = naive(x1, w.contiguous());
    check_close(bmm(x1, w), {4, 1, 29}, want1.values, gemm_tol(dt, 37), want1.scale);
    check_close(bmm(x1, w.contiguous()), {4, 1, 29}, want1.values, gemm_tol(dt, 37), want1.scale);
    // [2, 1, 5, 7] @ [1, 3, 7, 4] -> [2, 3, 5, 4]: each (i, j) pairs a[i, 0] with b[0, j].
    const Tensor a = make({2, 1, 5, 7}, dt, Layout::Contiguous, 5), b = make({1, 3, 7, 4}, dt, Layout::Transposed, 6);
    const Tensor got = matmul(a, b);
    REQUIRE(got.shape() == Shape{2, 3, 5, 4});
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < 3; ++j) {
        const Reference r = naive(a.select(0, i), b.select(1, j));
        check_close(got.select(0, i).select(0, j), {5, 4}, r.values, gemm_tol(dt, 7), r.scale);
      }
    }
  }
}

TEST_CASE("GEMM family: linear with bias rounds once, and an empty inner dim gives the bias") {
  for (DType dt : kFloatDTypes) {
    INFO(dtype_name(dt));
    const Tensor x = make({3, 37}, dt, Layout::Narrowed, 7), w = make({11, 37}, dt, Layout::Contiguous, 8);
    const Tensor bias = filled({22}, dt, 9, Values::Any).slice(0, 0, 22, 2);  // stride 2
    Reference want = naive(as_3d(x), as_3d(w.transpose(0, 1)));
    const std::vector<double> vb = read(bias);
    for (size_t i = 0; i < want.values.size(); ++i) {
      want.values[i] += vb[i % 11];
      want.scale[i] += std::abs(vb[i % 11]);
    }
    check_close(linear(x, w, bias), {3, 11}, want.values, gemm_tol(dt, 37), want.scale);
    const Tensor empty_x = Tensor::empty({3, 0}, dt), empty_w = Tensor::empty({11, 0}, dt);
    std::vector<double> bias_rows;
    for (int r = 0; r < 3; ++r) bias_rows.insert(bias_rows.end(), vb.begin(), vb.end());
    check_close(linear(empty_x, empty_w, bias), {3, 11}, bias_rows, {0, 0});
  }
}

TEST_CASE("GEMM family: oneDNN serves f32; a 16-bit type without a host kernel is the f32 product rounded once") {
  const Tensor a = make({5, 40}, DType::F32, Layout::Contiguous, 10);
  const Tensor b = make({40, 6}, DType::F32, Layout::Transposed, 11);
  const Tensor out = Tensor::empty({5, 6}, DType::F32);
  CHECK(cpu::onednn_matmul_impl(a, b, out) != "none");
  for (DType dt : {DType::BF16, DType::F16}) {
    const Tensor a16 = a.to(dt), b16 = b.to(dt);
    const std::string impl = cpu::onednn_matmul_impl(a16, b16, Tensor::empty({5, 6}, dt));
    INFO(dtype_name(dt) << " oneDNN implementation: " << impl);
    if (impl == "none") CHECK(equal(matmul(a16, b16), matmul(a16.to(DType::F32), b16.to(DType::F32)).to(dt)));
  }
}

TEST_CASE("GEMM family: primitives are created once per shape and reused") {
  const Tensor x = make({1, 96}, DType::F32, Layout::Contiguous, 12);
  const Tensor w = make({48, 96}, DType::F32, Layout::Contiguous, 13);
  linear(x, w);
  const int64_t created = cpu::onednn_primitives_created();
  for (int step = 0; step < 5; ++step) linear(x, w);
  CHECK(cpu::onednn_primitives_created() == created);
  linear(make({2, 96}, DType::F32, Layout::Contiguous, 14), w);
  CHECK(cpu::onednn_primitives_created() == created + 1);
}

TEST_CASE("GEMM family: mixed dtypes are refused naming the op and both dtypes") {
  const Tensor a = make({2, 3}, DType::BF16, Layout::Contiguous), b = make({3, 4}, DType::F16, Layout::Contiguous);
  expect_error<DTypeError>([&] { matmul(a, b); }, {"[matmul]", "bf16", "f16"});
  expect_error<DTypeError>([&] { linear(a, b.transpose(0, 1)); }, {"[linear]", "bf16", "f16"});
  expect_error<DTypeError>([&] { bmm(a.unsqueeze(0), b.to(DType::F32).unsqueeze(0)); }, {"[bmm]", "bf16", "f32"});
}

TEST_CASE("GEMM family: the matrix-vector kernel of decode steps, with tails, a bias and strided outputs") {
  // K = 1000 runs the 32-wide steps then one 8-wide step; K = 37 leaves 5 for the scalar tail.
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    for (int64_t k : {1000, 37, 5}) {
      INFO(dtype_name(dt) << " k=" << k);
      const int64_t n = 70;
      const Tensor x = make({1, k}, dt, Layout::Narrowed, 15);
      const Tensor w = filled({n, k + 3}, dt, 16, Values::Any).narrow(1, 0, k);  // rows k + 3 apart
      const Tensor bias = make({n}, dt, Layout::Contiguous, 17);
      const Reference plain = naive(as_3d(x), as_3d(w.transpose(0, 1)));
      Reference biased = plain;
      const std::vector<double> vb = read(bias);
      for (size_t i = 0; i < biased.values.size(); ++i) {
        biased.values[i] += vb[i];
        biased.scale[i] += std::abs(vb[i]);
      }
#if defined(__x86_64__)
      // Every x86-64 host this library runs on has AVX2 / FMA / F16C (the baseline), so the kernel runs.
      const Tensor wide = Tensor::empty({1, 2 * n}, dt);
      REQUIRE(cpu::gemv(x, w.transpose(0, 1), bias, wide.slice(1, 0, 2 * n, 2)));
      check_close(wide.slice(1, 0, 2 * n, 2), {1, n}, biased.values, gemm_tol(dt, k), biased.scale);
      const Tensor scores = Tensor::empty({1, n}, DType::F32);  // 16-bit operands into f32
      REQUIRE(cpu::gemv(x, w.transpose(0, 1), Tensor(), scores));
      check_close(scores, {1, n}, plain.values, gemm_tol(DType::F32, k), plain.scale);
      // The same product with b row-major (a KV head [T, D] times probabilities): rows scaled and summed.
      const Tensor b_rows = filled({k, n + 5}, dt, 18, Values::Any).narrow(1, 0, n);
      const Reference summed = naive(as_3d(x), as_3d(b_rows));
      const Tensor out_rows = Tensor::empty({1, n}, dt);
      REQUIRE(cpu::gemv(x, b_rows, Tensor(), out_rows));
      check_close(out_rows, {1, n}, summed.values, gemm_tol(dt, k), summed.scale);
#endif
      check_close(linear(x, w, bias), {1, n}, biased.values, gemm_tol(dt, k), biased.scale);
      check_close(linear(x.squeeze(0), w), {n}, plain.values, gemm_tol(dt, k), plain.scale);
    }
  }
  // Products the kernel does not take are left to GEMM.
  const Tensor x = make({2, 8}, DType::F32, Layout::Contiguous), w = make({8, 4}, DType::F32, Layout::Contiguous);
  CHECK_FALSE(cpu::gemv(x, w, Tensor(), Tensor::empty({2, 4}, DType::F32)));                  // two rows
  const Tensor every_other = make({8, 8}, DType::F32, Layout::Contiguous).slice(1, 0, 8, 2);  // strides (8, 2)
  CHECK_FALSE(cpu::gemv(x.narrow(0, 0, 1), every_other, Tensor(), Tensor::empty({1, 4}, DType::F32)));
  const Tensor x64 = x.narrow(0, 0, 1).to(DType::F64);
  CHECK_FALSE(cpu::gemv(x64, w.to(DType::F64), Tensor(), Tensor::empty({1, 4}, DType::F64)));
}
