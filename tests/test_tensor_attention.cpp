// The attention kernels of tensor/attention.hpp against references composed from other ops:
// causal_attention against per-head matmul / masked_fill / softmax, rotary against the rotation
// written out (x * cos + rotate_half(x) * sin, with cos / sin from std::cos in double).
#include <catch2/catch.hpp>

#include "tensor/attention.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <cmath>
#include <limits>

using namespace dtensor;

namespace {

Tensor normal(const Shape& shape, uint64_t seed, DType dtype) {
  return random(shape, DType::F64, {.seed = seed, .a = -1.0, .b = 1.0}).to(dtype);
}

// u8 [S, T]: 1 where key j is after query i's absolute position past + i.
Tensor future_mask(int64_t seq, int64_t total) {
  const int64_t past = total - seq;
  std::vector<uint8_t> mask(size_t(seq * total), 0);
  for (int64_t i = 0; i < seq; ++i)
    for (int64_t j = past + i + 1; j < total; ++j) mask[size_t(i * total + j)] = 1;
  return Tensor::from_vector(mask, {seq, total});
}

// Per query head: softmax(q k^T / sqrt(D) masked) v, with the ops of tensor/ops.hpp.
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of) {
  const int64_t seq = q.size(0), total = k.size(0), d = q.size(2);
  std::vector<Tensor> heads;
  for (int64_t h = 0; h < q.size(1); ++h) {
    const Tensor kh = k.select(1, kv_head_of[size_t(h)]), vh = v.select(1, kv_head_of[size_t(h)]);
    Tensor scores = mul(matmul(q.select(1, h), kh.transpose(0, 1)), 1.0 / std::sqrt(double(d)));
    scores = masked_fill(scores, future_mask(seq, total), -std::numeric_limits<double>::infinity());
    heads.push_back(matmul(softmax(scores, -1), vh).unsqueeze(1));
  }
  return cat(heads, 1);
}

std::vector<int64_t> grouped(int64_t heads, int64_t kv_heads) {
  std::vector<int64_t> map;
  for (int64_t h = 0; h < heads; ++h) map.push_back(h / (heads / kv_heads));
  return map;
}

struct AttentionCase {
  int64_t seq, total, heads, kv_heads, head_dim;
};

}  // namespace

TEST_CASE("causal_attention equals masked softmax attention per head", "[tensor][attention]") {
  // Prefill, prefill after a cached prefix, decode, blocks of queries beyond one (64 rows), MHA.
  const std::vector<AttentionCase> cases = {
      {5, 5, 4, 2, 8}, {3, 10, 4, 2, 8}, {1, 7, 6, 3, 4}, {130, 150, 2, 1, 16}, {70, 70, 3, 3, 6}};
  for (DType dtype : {DType::F64, DType::F32, DType::BF16, DType::F16}) {
    for (const AttentionCase& c : cases) {
      const Tensor q = normal({c.seq, c.heads, c.head_dim}, 1, dtype);
      const Tensor k = normal({c.total, c.kv_heads, c.head_dim}, 2, dtype);
      const Tensor v = normal({c.total, c.kv_heads, c.head_dim}, 3, dtype);
      const Tensor out = causal_attention(q, k, v);
      INFO("seq " << c.seq << " total " << c.total << " heads " << c.heads << "/" << c.kv_heads << " "
                  << dtype_name(dtype));
      CHECK(out.shape() == Shape{c.seq, c.heads, c.head_dim});
      CHECK(out.dtype() == dtype);
      // 16-bit: the f64 attention of the same rounded values, within the probabilities' and the
      // output's rounding (2^-8 relative for bf16, 2^-11 for f16).
      const double tol = dtype == DType::F64 ? 1e-12 : dtype == DType::F32 ? 2e-6 : dtype == DType::BF16 ? 2e-2 : 3e-3;
      const Tensor want =
          reference_attention(q.to(DType::F64), k.to(DType::F64), v.to(DType::F64), grouped(c.heads, c.kv_heads));
      CHECK(allclose(out.to(DType::F64), want, tol, tol));
    }
  }
}

TEST_CASE("causal_attention with an explicit KV head per query head, strided inputs, bf16", "[tensor][attention]") {
  // 3 query heads reading KV heads 1, 1, 0 (a rank's heads of an uneven split need such maps).
  const std::vector<int64_t> map = {1, 1, 0};
  const Tensor q = normal({4, 3, 8}, 4, DType::F64), k = normal({6, 2, 8}, 5, DType::F64),
               v = normal({6, 2, 8}, 6, DType::F64);
  CHECK(allclose(causal_attention(q, k, v, map), reference_attention(q, k, v, map), 1e-12, 1e-12));

  // Views with other strides give the same as their contiguous copies.
  const Tensor wide = normal({4, 3, 16}, 7, DType::F64);
  const Tensor strided_q = wide.narrow(2, 4, 8);
  CHECK(equal(causal_attention(strided_q, k, v, map), causal_attention(strided_q.contiguous(), k, v, map)));

  // bf16: computed in f32 from the bf16 values and rounded once.
  const Tensor qb = q.to(DType::BF16), kb = k.to(DType::BF16), vb = v.to(DType::BF16);
  const Tensor out = causal_attention(qb, kb, vb, map);
  CHECK(out.dtype() == DType::BF16);
  const Tensor expected = reference_attention(qb.to(DType::F64), kb.to(DType::F64), vb.to(DType::F64), map);
  CHECK(allclose(out.to(DType::F64), expected, 1e-2, 1e-2));
}

TEST_CASE("causal_attention refuses inconsistent arguments, naming them", "[tensor][attention]") {
  const Tensor q = normal({3, 4, 8}, 1, DType::F32), k = normal({5, 2, 8}, 2, DType::F32);
  CHECK_THROWS_WITH(causal_attention(q, normal({2, 2, 8}, 3, DType::F32), normal({2, 2, 8}, 3, DType::F32)),
                    Catch::Contains("[causal_attention]") && Catch::Contains("fewer than the 3 queries"));
  CHECK_THROWS_AS(causal_attention(q, k, normal({5, 2, 4}, 3, DType::F32)), ShapeError);
  CHECK_THROWS_AS(causal_attention(q, k, k.to(DType::F64)), DTypeError);
  CHECK_THROWS_AS(causal_attention(normal({3, 3, 8}, 1, DType::F32), k, k), ShapeError);  // 3 heads, 2 KV heads
  CHECK_THROWS_WITH(causal_attention(q, k, k, {0, 1, 2, 0}), Catch::Contains("kv_head_of[2] = 2"));
  CHECK_THROWS_AS(causal_attention(q, k, k, {0, 1}), ShapeError);
  float storage[64] = {};
  const Tensor gpu = Tensor::from_blob(storage, {2, 4, 8}, DType::F32, {}, Device::cuda(0));
  CHECK_THROWS_AS(causal_attention(gpu, k, k), DeviceError);
}

TEST_CASE("rotary tables follow Hugging Face's inv_freq and cat(freqs, freqs)", "[tensor][attention]") {
  const int64_t d = 8;
  const double theta = 500.0;
  const std::vector<int64_t> positions = {0, 3, 17, 1000};
  const RotaryTables t = rotary_tables(positions, d, theta, DType::F32);
  REQUIRE(t.cos.shape() == Shape{4, d});
  const std::vector<float> cos = t.cos.to_vector<float>(), sin = t.sin.to_vector<float>();
  for (size_t p = 0; p < positions.size(); ++p) {
    for (int64_t i = 0; i < d; ++i) {
      const double angle = double(positions[p]) / std::pow(theta, double(2 * (i % (d / 2))) / double(d));
      INFO("position " << positions[p] << " dim " << i);
      // f32 angles: the error grows with the angle (about 1e-4 relative to 1000 radians).
      CHECK(cos[p * d + size_t(i)] == Approx(std::cos(angle)).margin(2e-4));
      CHECK(sin[p * d + size_t(i)] == Approx(std::sin(angle)).margin(2e-4));
    }
  }
  CHECK(rotary_tables(positions, d, theta, DType::BF16).cos.dtype() == DType::BF16);
  CHECK_THROWS_AS(rotary_tables(positions, 7, theta, DType::F32), ValueError);
  CHECK_THROWS_AS(rotary_tables({-1}, d, theta, DType::F32), ValueError);
  CHECK_THROWS_AS(rotary_tables(positions, d, theta, DType::I32), DTypeError);
}

TEST_CASE("apply_rotary rotates each pair (i, i + D/2) by its angle", "[tensor][attention]") {
  const int64_t seq = 5, heads = 3, d = 6;
  const std::vector<int64_t> positions = {0, 1, 2, 7, 40};
  for (DType dtype : {DType::F64, DType::F32}) {
    const Tensor x = normal({seq, heads, d}, 9, dtype);
    const RotaryTables t = rotary_tables(positions, d, 10000.0, dtype);
    // x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1), with cos / sin broadcast over heads.
    const Tensor x1 = x.narrow(2, 0, d / 2), x2 = x.narrow(2, d / 2, d / 2);
    const Tensor rotated = cat({neg(x2), x1}, 2);
    const Tensor expected = add(mul(x, t.cos.unsqueeze(1)), mul(rotated, t.sin.unsqueeze(1)));
    CHECK(allclose(apply_rotary(x, t), expected, 1e-6, 1e-6));
    // Position 0 is the identity.
    CHECK(allclose(apply_rotary(x, t).select(0, 0), x.select(0, 0), 0, 0));
  }
  // Head dim 2, theta anything: position p turns (a, b) by p radians.
  const Tensor pair = Tensor::from_vector<double>({1.0, 2.0}, {1, 1, 2});
  const Tensor turned = apply_rotary(pair, rotary_tables({3}, 2, 10000.0, DType::F64));
  const std::vector<double> v = turned.to_vector<double>();
  const double c = double(std::cos(3.0f)), s = double(std::sin(3.0f));
  CHECK(v[0] == Approx(1.0 * c - 2.0 * s).margin(1e-6));
  CHECK(v[1] == Approx(2.0 * c + 1.0 * s).margin(1e-6));
  // bf16: each product and the sum rounded to bf16, as the torch ops would.
  const Tensor xb = normal({seq, heads, d}, 10, DType::BF16);
  const RotaryTables tb = rotary_tables(positions, d, 10000.0, DType::BF16);
  const Tensor expected_b =
      add(mul(xb, tb.cos.unsqueeze(1)),
          mul(cat({neg(xb.narrow(2, d / 2, d / 2)), xb.narrow(2, 0, d / 2)}, 2), tb.sin.unsqueeze(1)));
  CHECK(equal(apply_rotary(xb, tb), expected_b));
  CHECK_THROWS_AS(apply_rotary(normal({4, heads, d}, 1, DType::F32), rotary_tables(positions, d, 1e4, DType::F32)),
                  ShapeError);
  CHECK_THROWS_AS(apply_rotary(normal({seq, heads, d}, 1, DType::F32), rotary_tables(positions, d, 1e4, DType::F64)),
                  DTypeError);
}
