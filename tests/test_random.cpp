// The counter-based generator: known-answer values, distribution moments, and the property the
// library relies on: a block generated alone equals the same block of the full tensor.
#include <catch2/catch.hpp>

#include "tensor/random.hpp"

#include <cmath>

using namespace dtensor;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors", "[random]") {
  // Random123's kat_vectors: philox4x32 10 rounds, counter = 0, key = 0.
  auto zero = philox4x32(0, 0);
  CHECK(zero == std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
}

TEST_CASE("uniform and normal values have the expected moments", "[random]") {
  const int64_t n = 200000;
  Tensor u = random({n}, DType::F64, {.seed = 7, .distribution = Distribution::Uniform, .a = -1, .b = 3});
  Tensor g = random({n}, DType::F64, {.seed = 7, .distribution = Distribution::Normal, .a = 2, .b = 0.5});
  double usum = 0, umin = 1e9, umax = -1e9, gsum = 0, gsq = 0;
  for (double v : u.to_vector<double>()) usum += v, umin = std::min(umin, v), umax = std::max(umax, v);
  for (double v : g.to_vector<double>()) gsum += v, gsq += v * v;
  CHECK(umin >= -1.0);
  CHECK(umax < 3.0);
  CHECK(usum / n == Approx(1.0).margin(0.02));
  double gmean = gsum / n;
  CHECK(gmean == Approx(2.0).margin(0.01));
  CHECK(std::sqrt(gsq / n - gmean * gmean) == Approx(0.5).margin(0.01));
}

TEST_CASE("a block generated alone equals that block of the full tensor", "[random]") {
  const Shape global = {7, 5, 3};
  for (DType dtype : {DType::F32, DType::BF16, DType::I32}) {
    RandomOptions opts{.seed = 42, .distribution = Distribution::Normal, .a = 0, .b = 10};
    Tensor full = random(global, dtype, opts);
    for (int64_t r0 = 0; r0 < 7; r0 += 3) {
      Shape offset = {r0, 1, 0};
      Shape block = {std::min<int64_t>(3, 7 - r0), 4, 3};
      Tensor part = random_block(global, offset, block, dtype, opts);
      Tensor expected = full.narrow(0, r0, block[0]).narrow(1, 1, 4);
      CHECK(part.to_vector<double>() == expected.to_vector<double>());
    }
  }
  Tensor a = random({16}, DType::F32, {.seed = 1});
  Tensor b = random({16}, DType::F32, {.seed = 2});
  CHECK(a.to_vector<float>() != b.to_vector<float>());
  CHECK_THROWS_AS(random_block({4}, {3}, {2}, DType::F32, {}), ShapeError);
}
