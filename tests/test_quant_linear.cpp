// quantized_linear (tensor/quant/quantized.hpp) against f64 products with the dequantized matrix,
// on odd shapes, with every CPU kernel forced in turn (scalar, AVX2, AVX-512 where the host has
// it); LLM.int8's outlier decomposition against its definition written out here; bad input.
#include <catch2/catch.hpp>

#include "skip.hpp"
#include "tensor/error.hpp"
#include "tensor/quant/kernels.hpp"
#include "tensor/quant/quantized.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using namespace dtensor;

namespace {

std::vector<float> random_values(int64_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(gen);
  return v;
}

// y[i, r] = sum_c x[i, c] w[r, c] in f64, and sum_c |x w| for the tolerance.
struct Product {
  std::vector<double> value, magnitude;
};
Product reference(const std::vector<float>& x, const std::vector<float>& w, int64_t m, int64_t rows, int64_t cols) {
  Product p;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0, magnitude = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double t = double(x[size_t(i * cols + c)]) * double(w[size_t(r * cols + c)]);
        sum += t;
        magnitude += std::fabs(t);
      }
      p.value.push_back(sum);
      p.magnitude.push_back(magnitude);
    }
  }
  return p;
}

// f32 accumulation in another order than the reference: a few ulps of sum |x w| per term count.
void check_close(const std::vector<float>& got, const Product& want, int64_t cols, double ulps_per_term = 2.0) {
  REQUIRE(got.size() == want.value.size());
  for (size_t k = 0; k < got.size(); ++k) {
    const double tol = want.magnitude[k] * 6e-8 * ulps_per_term * std::sqrt(double(cols)) + 1e-30;
    INFO("element " << k << " got " << got[k] << " want " << want.value[k]);
    REQUIRE(std::fabs(double(got[k]) - want.value[k]) <= tol);
  }
}

std::vector<quant::Isa> host_isas() {
  std::vector<quant::Isa> isas{quant::Isa::Scalar};
  if (quant::host_isa() >= quant::Isa::Avx2) isas.push_back(quant::Isa::Avx2);
  if (quant::host_isa() >= quant::Isa::Avx512) isas.push_back(quant::Isa::Avx512);
  return isas;
}

struct IsaScope {
  explicit IsaScope(quant::Isa isa) { quant::set_isa_override(isa); }
  ~IsaScope() { quant::set_isa_override(std::nullopt); }
};

struct Case {
  int64_t m, rows, cols;
};

}  // namespace

TEST_CASE("quantized_linear equals the product with the dequantized matrix on every kernel", "[quant]") {
  const std::vector<Case> cases{{1, 7, 64}, {3, 33, 128}, {16, 65, 192}, {5, 1, 64}, {1, 300, 576}};
  for (quant::Isa isa : host_isas()) {
    IsaScope scope(isa);
    for (QuantFormat f : kAllQuantFormats) {
      for (const Case& c : cases) {
        INFO(quant::isa_name(isa) << " " << quant_format_name(f) << " m " << c.m << " rows " << c.rows << " cols "
                                  << c.cols);
        const auto wv = random_values(c.rows * c.cols, unsigned(c.rows * 31 + c.cols));
        const auto xv = random_values(c.m * c.cols, unsigned(c.m + 5));
        const QuantizedMatrix q = QuantizedMatrix::quantize(Tensor::from_vector(wv, {c.rows, c.cols}), f);
        const auto deq = q.dequantize().to_vector<float>();
        QuantOptions exact;
        exact.quantize_activations = false;
        const Tensor y = quantized_linear(Tensor::from_vector(xv, {c.m, c.cols}), q, exact);
        REQUIRE(y.shape() == Shape{c.m, c.rows});
        REQUIRE(y.dtype() == DType::F32);
        check_close(y.to_vector<float>(), reference(xv, deq, c.m, c.rows, c.cols), c.cols);
      }
    }
  }
}

// x rounded as llama.cpp's q8_0 activations: per 32 elements d = absmax / 127, x ~ d * round(x / d).
std::vector<float> q8_rounded(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127, inv = amax == 0 ? 0.0f : 127 / amax;
    for (size_t j = 0; j < 32; ++j) out[b + j] = d * std::nearbyint(float(double(x[b + j]) * inv));
  }
  return out;
}

TEST_CASE("quantized_linear: q8_0 / q4_0 / q4_1 with q8_0-rounded activations on every kernel", "[quant]") {
  const std::vector<Case> cases{{1, 5, 64}, {1, 130, 576}, {6, 33, 128}, {16, 9, 1536}};
  for (quant::Isa isa : host_isas()) {
    IsaScope scope(isa);
    for (QuantFormat f : {QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_1}) {
      for (const Case& c : cases) {
        INFO(quant::isa_name(isa) << " " << quant_format_name(f) << " m " << c.m << " rows " << c.rows << " cols "
                                  << c.cols);
        const auto wv = random_values(c.rows * c.cols, unsigned(c.rows + c.cols));
        auto xv = random_values(c.m * c.cols, unsigned(c.m + 9));
        std::fill(xv.begin(), xv.begin() + 32, 0.0f);  // an all-zero block of x
        const QuantizedMatrix q = QuantizedMatrix::quantize(Tensor::from_vector(wv, {c.rows, c.cols}), f);
        const Tensor y = quantized_linear(Tensor::from_vector(xv, {c.m, c.cols}), q);
        const Product want = reference(q8_rounded(xv), q.dequantize().to_vector<float>(), c.m, c.rows, c.cols);
        check_close(y.to_vector<float>(), want, c.cols, 4.0);
      }
    }
  }
}

TEST_CASE("quantized_linear: int8 with cols not a multiple of 32, bias, leading dims, bf16", "[quant]") {
  for (quant::Isa isa : host_isas()) {
    IsaScope scope(isa);
    INFO(quant::isa_name(isa));
    const int64_t rows = 9, cols = 37;
    const auto wv = random_values(rows * cols, 1), xv = random_values(2 * 3 * cols, 2);
    const QuantizedMatrix q = QuantizedMatrix::quantize(Tensor::from_vector(wv, {rows, cols}), QuantFormat::Int8);
    const auto deq = q.dequantize().to_vector<float>();
    const auto bias = random_values(rows, 3);
    const Tensor y = quantized_linear(Tensor::from_vector(xv, {2, 3, cols}), q, {}, Tensor::from_vector(bias, {rows}));
    REQUIRE(y.shape() == Shape{2, 3, rows});
    Product want = reference(xv, deq, 6, rows, cols);
    for (size_t k = 0; k < want.value.size(); ++k) {
      want.value[k] += bias[k % size_t(rows)];
      want.magnitude[k] += std::fabs(bias[k % size_t(rows)]);
    }
    check_close(y.to_vector<float>(), want, cols);

    const Tensor xb = Tensor::from_vector(xv, {6, cols}).to(DType::BF16);
    const Tensor yb = quantized_linear(xb, q);
    REQUIRE(yb.dtype() == DType::BF16);
    const auto xr = xb.to(DType::F32).to_vector<float>();
    const Product wb = reference(xr, deq, 6, rows, cols);
    const auto got = yb.to(DType::F32).to_vector<float>();
    for (size_t k = 0; k < got.size(); ++k) {
      REQUIRE(std::fabs(double(got[k]) - wb.value[k]) <= wb.magnitude[k] * 1e-5 + std::fabs(wb.value[k]) * 8e-3);
    }
  }
}

TEST_CASE("quantized_linear: LLM.int8 outlier decomposition", "[quant]") {
  const int64_t m = 4, rows = 11, cols = 96;
  const double threshold = 6.0;
  const auto wv = random_values(rows * cols, 21);
  const QuantizedMatrix q = QuantizedMatrix::quantize(Tensor::from_vector(wv, {rows, cols}), QuantFormat::Int8);
  const auto deq = q.dequantize().to_vector<float>();
  const auto wq = q.data().to_vector<int8_t>();
  const auto w_scale = q.scales().to_vector<float>();
  auto xv = random_values(m * cols, 22);
  const std::vector<int64_t> outlier_cols{5, 40, 95};
  xv[size_t(1 * cols + 5)] = 9.0f;    // column 5 is an outlier through one row only
  xv[size_t(0 * cols + 40)] = -6.0f;  // |x| == threshold counts
  xv[size_t(3 * cols + 95)] = 100.0f;
  for (quant::Isa isa : host_isas()) {
    IsaScope scope(isa);
    INFO(quant::isa_name(isa));
    DYNAMIC_SECTION("outlier columns alone are exact in f32: " << quant::isa_name(isa)) {
      std::vector<float> only(static_cast<size_t>(m * cols), 0.0f);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t c : outlier_cols) only[size_t(i * cols + c)] = xv[size_t(i * cols + c)];
      }
      only[size_t(1 * cols + 5)] = 9.0f, only[size_t(0 * cols + 40)] = -6.0f, only[size_t(3 * cols + 95)] = 100.0f;
      const Tensor y = quantized_linear(Tensor::from_vector(only, {m, cols}), q, {threshold});
      check_close(y.to_vector<float>(), reference(only, deq, m, rows, cols), cols);
    }
    DYNAMIC_SECTION("the rest as int8 x int8, scaled by both row scales: " << quant::isa_name(isa)) {
      std::vector<double> want(static_cast<size_t>(m * rows));
      for (int64_t i = 0; i < m; ++i) {
        const float* x = xv.data() + i * cols;
        auto is_outlier = [&](int64_t c) {
          return std::find(outlier_cols.begin(), outlier_cols.end(), c) != outlier_cols.end();
        };
        float amax = 0;
        for (int64_t c = 0; c < cols; ++c) amax = is_outlier(c) ? amax : std::max(amax, std::fabs(x[c]));
        for (int64_t r = 0; r < rows; ++r) {
          int64_t integer = 0;
          double outliers = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const int w8 = wq[size_t(r * cols + c)];
            if (is_outlier(c)) {
              outliers += double(x[c]) * double(w8);
            } else {
              integer += int64_t(std::nearbyint(float(x[c] * (127.0f / amax)))) * w8;
            }
          }
          want[size_t(i * rows + r)] = (double(integer) * (amax / 127.0f) + outliers) * w_scale[size_t(r)];
        }
      }
      const auto got = quantized_linear(Tensor::from_vector(xv, {m, cols}), q, {threshold}).to_vector<float>();
      for (size_t k = 0; k < got.size(); ++k) REQUIRE(std::fabs(got[k] - want[k]) <= 1e-4 * (1 + std::fabs(want[k])));
      // Against the unquantized product: int8 activations cost about 1% here, outliers nothing.
      const Product exact = reference(xv, deq, m, rows, cols);
      for (size_t k = 0; k < got.size(); ++k) REQUIRE(std::fabs(got[k] - exact.value[k]) <= 0.02 * exact.magnitude[k]);
    }
  }
}

TEST_CASE("quantized_linear: bad input", "[quant]") {
  const QuantizedMatrix q =
      QuantizedMatrix::quantize(Tensor::from_vector(random_values(4 * 64, 1), {4, 64}), QuantFormat::Q4_0);
  const Tensor x = Tensor::from_vector(random_values(64, 2), {1, 64});
  CHECK_THROWS_AS(quantized_linear(x.to(DType::F16), q), DTypeError);
  CHECK_THROWS_AS(quantized_linear(x.narrow(1, 0, 32), q), ShapeError);
  CHECK_THROWS_AS(quantized_linear(x, q, {6.0}), ValueError);
  CHECK_THROWS_AS(quantized_linear(x, q, {}, Tensor::zeros({5}, DType::F32)), ShapeError);
  CHECK_THROWS_AS(quantized_linear(x, q, {}, Tensor::zeros({4}, DType::BF16)), DTypeError);
  CHECK_THROWS_AS(quantized_linear(x, QuantizedMatrix()), ValueError);
  CHECK(quantized_linear(Tensor::zeros({0, 64}, DType::F32), q).shape() == Shape{0, 4});
}
