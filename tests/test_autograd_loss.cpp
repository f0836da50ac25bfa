// Local cross-entropy: values against a reference written here in f64 on the host, gradients by
// gradcheck (ignored tokens, a vocab of odd size, non-contiguous and higher-dim logits), 16-bit
// logits against f64, the all-ignored batch, and the argument errors.
#include "autograd_test_util.hpp"

#include <cmath>
#include <limits>

using namespace dtensor;
using Catch::Contains;

namespace {

constexpr int64_t kIgnore = -100;

// torch's F.cross_entropy(logits, labels, ignore_index), written out row by row.
double reference_loss(const Tensor& logits, const std::vector<int64_t>& labels, int64_t ignore_index) {
  const int64_t vocab = logits.size(-1);
  const std::vector<double> x = logits.to(DType::F64).contiguous().to_vector<double>();
  double total = 0.0;
  int64_t count = 0;
  for (size_t r = 0; r < labels.size(); ++r) {
    if (labels[r] == ignore_index) continue;
    const double* row = x.data() + int64_t(r) * vocab;
    double max = row[0], sum = 0.0;
    for (int64_t v = 1; v < vocab; ++v) max = std::max(max, row[v]);
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
    total += std::log(sum) + max - row[labels[r]];
    ++count;
  }
  return total / double(count);
}

Tensor labels_of(const std::vector<int64_t>& values, const Shape& shape, DType dtype = DType::I64) {
  return Tensor::from_vector(values, shape).to(dtype);
}

}  // namespace

TEST_CASE("cross_entropy equals torch's formula, ignored tokens left out of the mean", "[autograd][loss]") {
  Tensor logits = normal({6, 7}, 1);
  const std::vector<int64_t> labels = {3, kIgnore, 0, 6, kIgnore, 2};
  auto dtype = GENERATE(DType::I64, DType::I32);
  Tensor loss = ag::cross_entropy(logits, labels_of(labels, {6}, dtype));
  CHECK(loss.shape() == Shape{});
  CHECK(loss.dtype() == DType::F64);
  CHECK(loss.item<double>() == Approx(reference_loss(logits, labels, kIgnore)).epsilon(1e-12));
}

TEST_CASE("cross_entropy of equal logits is log(vocab)", "[autograd][loss]") {
  Tensor loss = ag::cross_entropy(Tensor::zeros({4, 5}, DType::F32), labels_of({0, 1, 2, 4}, {4}));
  CHECK(loss.dtype() == DType::F32);
  CHECK(loss.item<double>() == Approx(std::log(5.0)).epsilon(1e-6));
}

TEST_CASE("cross_entropy's gradient passes gradcheck", "[autograd][loss][gradcheck]") {
  SECTION("rows with ignored tokens, vocab 7") {
    Tensor labels = labels_of({3, kIgnore, 0, 6, kIgnore, 2}, {6});
    require_gradcheck([&](const auto& x) { return ag::cross_entropy(x[0], labels); }, {normal({6, 7}, 2)});
  }
  SECTION("non-contiguous logits") {
    Tensor labels = labels_of({4, 1, 0, 2, 4}, {5});
    require_gradcheck([&](const auto& x) { return ag::cross_entropy(x[0], labels); }, {transposed_normal(5, 5, 3)});
    require_gradcheck([&](const auto& x) { return ag::cross_entropy(x[0], labels); }, {narrowed_normal({5, 6}, 4)});
  }
  SECTION("[batch, time, vocab] logits and an ignore_index inside the vocab") {
    Tensor labels = labels_of({1, 0, 2, 0, 4, 3}, {2, 3});
    require_gradcheck([&](const auto& x) { return ag::cross_entropy(x[0], labels, 0); }, {normal({2, 3, 5}, 5)});
  }
  SECTION("one row: [vocab] logits, a 0-d label") {
    require_gradcheck([&](const auto& x) { return ag::cross_entropy(x[0], labels_of({2}, {})); }, {normal({3}, 6)});
  }
}

TEST_CASE("cross_entropy computes 16-bit logits in f32", "[autograd][loss]") {
  auto dtype = GENERATE(DType::BF16, DType::F16);
  Tensor logits = normal({5, 9}, 7, dtype);
  Tensor labels = labels_of({8, 0, kIgnore, 4, 4}, {5});
  Tensor low = logits;
  ag::set_requires_grad(low);
  Tensor wide = logits.to(DType::F64);
  ag::set_requires_grad(wide);
  Tensor low_loss = ag::cross_entropy(low, labels);
  Tensor wide_loss = ag::cross_entropy(wide, labels);
  ag::backward(low_loss);
  ag::backward(wide_loss);
  const double atol = dtype == DType::BF16 ? 2e-2 : 2e-3;
  CHECK(low_loss.dtype() == dtype);
  CHECK(low_loss.item<double>() == Approx(wide_loss.item<double>()).margin(atol));
  REQUIRE(ag::grad(low).dtype() == dtype);
  CHECK(allclose(ag::grad(low).to(DType::F64), ag::grad(wide), 0.0, atol / 10));
}

TEST_CASE("cross_entropy with every token ignored is NaN with a zero gradient, as torch", "[autograd][loss]") {
  Tensor logits = normal({3, 4}, 8);
  ag::set_requires_grad(logits);
  Tensor loss = ag::cross_entropy(logits, labels_of({kIgnore, kIgnore, kIgnore}, {3}));
  CHECK(std::isnan(loss.item<double>()));
  ag::backward(loss);
  CHECK(equal(ag::grad(logits), Tensor::zeros({3, 4}, DType::F64)));
}

TEST_CASE("cross_entropy names the bad argument", "[autograd][loss][errors]") {
  Tensor logits = normal({4, 5}, 9);
  SECTION("a label outside [0, vocab): its flat position and value, on every label dtype") {
    auto dtype = GENERATE(DType::I64, DType::I32);
    CHECK_THROWS_AS(ag::cross_entropy(logits, labels_of({0, 1, 5, 2}, {4}, dtype)), ValueError);
    CHECK_THROWS_WITH(ag::cross_entropy(logits, labels_of({0, 1, 5, 2}, {4}, dtype)),
                      Contains("labels at flat position 2 is 5") && Contains("[0, 5)"));
    CHECK_THROWS_WITH(ag::cross_entropy(logits.reshape({2, 2, 5}), labels_of({0, 1, 2, -1}, {2, 2}, dtype)),
                      Contains("labels at flat position 3 is -1"));
  }
  SECTION("ignore_index itself is no error, another negative is") {
    CHECK_NOTHROW(ag::cross_entropy(logits, labels_of({0, -7, 1, 2}, {4}), -7));
    CHECK_THROWS_AS(ag::cross_entropy(logits, labels_of({0, -7, 1, 2}, {4})), ValueError);
  }
  SECTION("shapes and dtypes") {
    CHECK_THROWS_AS(ag::cross_entropy(logits, labels_of({0, 1, 2}, {3})), ShapeError);
    CHECK_THROWS_WITH(ag::cross_entropy(logits, labels_of({0, 1, 2}, {3})),
                      Contains("labels has shape [3]") && Contains("[4]"));
    CHECK_THROWS_AS(ag::cross_entropy(logits, Tensor::zeros({4}, DType::F32)), DTypeError);
    CHECK_THROWS_WITH(ag::cross_entropy(logits, Tensor::zeros({4}, DType::F32)), Contains("labels"));
    CHECK_THROWS_AS(ag::cross_entropy(Tensor::zeros({4, 5}, DType::I64), labels_of({0, 1, 2, 3}, {4})), DTypeError);
    CHECK_THROWS_WITH(ag::cross_entropy(Tensor::zeros({4, 5}, DType::I64), labels_of({0, 1, 2, 3}, {4})),
                      Contains("logits"));
    CHECK_THROWS_AS(ag::cross_entropy(Tensor::zeros({}, DType::F64), labels_of({0}, {})), ShapeError);
  }
}
