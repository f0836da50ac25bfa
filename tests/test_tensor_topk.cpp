// topk (CPU) against a sort-based reference: every dim of a 3-D tensor, strided input, ties
// broken by the lower index, NaN ranked first, integer dtypes, and bad k.
#include <catch2/catch.hpp>

#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

using namespace dtensor;

namespace {

// The top k of one line of doubles as (value, index), by a stable sort descending.
std::vector<std::pair<double, int64_t>> reference_line(const std::vector<double>& line, int64_t k) {
  std::vector<int64_t> order(line.size());
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) {
    if (std::isnan(line[size_t(i)])) return !std::isnan(line[size_t(j)]);
    return !std::isnan(line[size_t(j)]) && line[size_t(i)] > line[size_t(j)];
  });
  std::vector<std::pair<double, int64_t>> out;
  for (int64_t c = 0; c < k; ++c) out.emplace_back(line[size_t(order[size_t(c)])], order[size_t(c)]);
  return out;
}

// Checks topk(a, k, dim) line by line against the reference (a is [d0, d1, d2], f64 values).
void check_topk(const Tensor& a, int64_t k, int64_t dim) {
  auto [values, indices] = topk(a, k, dim);
  Shape expected_shape = a.shape();
  expected_shape[size_t(dim)] = k;
  REQUIRE(values.shape() == expected_shape);
  REQUIRE(indices.shape() == expected_shape);
  REQUIRE(indices.dtype() == DType::I64);
  REQUIRE(values.dtype() == a.dtype());
  const Tensor lines = a.to(DType::F64).transpose(dim, -1).contiguous();
  const Tensor got_v = values.to(DType::F64).transpose(dim, -1).contiguous();
  const Tensor got_i = indices.transpose(dim, -1).contiguous();
  const int64_t n = a.size(dim);
  const std::vector<double> all = lines.to_vector<double>();
  const std::vector<double> gv = got_v.to_vector<double>();
  const std::vector<int64_t> gi = got_i.to_vector<int64_t>();
  for (int64_t r = 0; r * n < int64_t(all.size()); ++r) {
    std::vector<double> line(all.begin() + r * n, all.begin() + (r + 1) * n);
    auto expected = reference_line(line, k);
    for (int64_t c = 0; c < k; ++c) {
      const auto [v, i] = expected[size_t(c)];
      INFO("line " << r << " rank " << c);
      CHECK(gi[size_t(r * k + c)] == i);
      if (std::isnan(v))
        CHECK(std::isnan(gv[size_t(r * k + c)]));
      else
        CHECK(gv[size_t(r * k + c)] == v);
    }
  }
}

}  // namespace

TEST_CASE("topk along every dim matches a stable sort, ties by the lower index", "[tensor][topk]") {
  // Values in a small range so ties are frequent.
  const Tensor a = random({4, 5, 6}, DType::I64, {.seed = 3, .a = -2, .b = 3}).to(DType::F64);
  for (int64_t dim = 0; dim < 3; ++dim) {
    for (int64_t k : {int64_t(0), int64_t(1), int64_t(2), a.size(dim)}) {
      INFO("dim " << dim << " k " << k);
      check_topk(a, k, dim);
    }
  }
  // A strided (transposed) input, a negative dim, f32 and an integer dtype.
  check_topk(a.transpose(0, 2), 3, 1);
  auto [v, i] = topk(a, 2, -1);
  CHECK(equal(i, topk(a, 2, 2).second));
  check_topk(a.to(DType::F32), 2, 2);
  check_topk(a.to(DType::I32), 4, 1);
}

TEST_CASE("topk ranks NaN first and handles exact ties", "[tensor][topk]") {
  const double nan = std::nan("");
  Tensor a = Tensor::from_vector<double>({1, nan, 3, 3, nan, -1}, {6});
  auto [values, indices] = topk(a, 4);
  CHECK(indices.to_vector<int64_t>() == std::vector<int64_t>{1, 4, 2, 3});
  std::vector<double> v = values.to_vector<double>();
  CHECK(std::isnan(v[0]));
  CHECK(std::isnan(v[1]));
  CHECK(v[2] == 3);
  CHECK(v[3] == 3);
  Tensor flat = Tensor::full({5}, 2.0, DType::F32);
  CHECK(topk(flat, 5).second.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
}

TEST_CASE("topk refuses k out of range and a bad dim", "[tensor][topk]") {
  Tensor a = Tensor::zeros({3, 4}, DType::F32);
  CHECK_THROWS_AS(topk(a, 5, 1), ValueError);
  CHECK_THROWS_AS(topk(a, -1, 1), ValueError);
  CHECK_THROWS_WITH(topk(a, 4, 0), Catch::Contains("[topk]") && Catch::Contains("k = 4"));
  CHECK_THROWS_AS(topk(a, 1, 2), ShapeError);
  // A scalar is one element.
  auto [v, i] = topk(Tensor::full({}, 7.0, DType::F64), 1);
  CHECK(v.item<double>() == 7.0);
  CHECK(i.item<int64_t>() == 0);
}
