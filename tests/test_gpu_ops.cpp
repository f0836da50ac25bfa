// The ops of tensor/ops.hpp and tensor/attention.hpp on a CUDA device against the CPU kernels on
// the same inputs.
#include "gpu_test_util.hpp"

#include "tensor/attention.hpp"
#include "tensor/cuda/cuda_ops.hpp"

const std::vector<DType> kFloats = {DType::F32, DType::F64, DType::BF16, DType::F16};

TEST_CASE("binary ops broadcast like the CPU kernels") {
  using Fn = Tensor (*)(const Tensor&, const Tensor&);
  const std::vector<std::pair<const char*, Fn>> ops = {{"add", add}, {"sub", sub},         {"mul", mul},
                                                       {"div", div}, {"maximum", maximum}, {"minimum", minimum},
                                                       {"eq", eq},   {"lt", lt},           {"ge", ge}};
  for (DType dtype : kFloats) {
    Tensor a = random_input({4, 1, 6}, dtype, 10);
    Tensor b = random_input({5, 1}, dtype, 11, 0.5, 2.0);
    for (const auto& [name, op] : ops) {
      INFO(name << " " << dtype_name(dtype));
      require_matches(op(a.to(kGpu), b.to(kGpu)), op(a, b));
    }
    // A transposed (non-contiguous) operand.
    Tensor m = random_input({6, 4}, dtype, 12);
    require_matches(add(m.to(kGpu).transpose(0, 1), a.select(1, 0).to(kGpu)), add(m.transpose(0, 1), a.select(1, 0)));
  }
  Tensor ia = random_input({3, 4}, DType::I32, 13, -100, 100);
  Tensor ib = random_input({4}, DType::I32, 14, -100, 100);
  REQUIRE(equal(add(ia.to(kGpu), ib.to(kGpu)).to(Device::cpu()), add(ia, ib)));
  REQUIRE(equal(mul(ia.to(kGpu), 3.0).to(Device::cpu()), mul(ia, 3.0)));
  REQUIRE_THROWS_AS(div(ia.to(kGpu), ib.to(kGpu)), DTypeError);
}

TEST_CASE("scalar forms, where and masked_fill") {
  Tensor a = random_input({3, 5}, DType::BF16, 20);
  Tensor b = random_input({5}, DType::BF16, 21);
  Tensor cond = gt(a, Tensor::zeros({1}, DType::BF16));
  require_matches(add(a.to(kGpu), 0.25), add(a, 0.25));
  require_matches(mul(a.to(kGpu), -3.0), mul(a, -3.0));
  require_matches(where(cond.to(kGpu), a.to(kGpu), b.to(kGpu)), where(cond, a, b));
  require_matches(masked_fill(a.to(kGpu), cond.to(kGpu), -7.0), masked_fill(a, cond, -7.0));
}

TEST_CASE("unary ops") {
  using Fn = Tensor (*)(const Tensor&);
  const std::vector<std::pair<const char*, Fn>> ops = {{"neg", neg},   {"abs", abs},   {"exp", exp},  {"tanh", tanh},
                                                       {"relu", relu}, {"silu", silu}, {"gelu", gelu}};
  for (DType dtype : kFloats) {
    Tensor a = random_input({7, 9}, dtype, 30);
    Tensor positive = random_input({7, 9}, dtype, 31, 0.1, 4.0);
    for (const auto& [name, op] : ops) {
      INFO(name << " " << dtype_name(dtype));
      require_matches(op(a.to(kGpu)), op(a));
    }
    require_matches(log(positive.to(kGpu)), log(positive));
    require_matches(sqrt(positive.to(kGpu)), sqrt(positive));
    require_matches(rsqrt(positive.to(kGpu)), rsqrt(positive));
  }
}

TEST_CASE("reductions over the last dim and over general dims") {
  for (DType dtype : kFloats) {
    INFO(dtype_name(dtype));
    Tensor a = random_input({3, 4, 50}, dtype, 40);
    const double tol = std::max(rtol_for(dtype), 1e-5);
    require_matches(sum(a.to(kGpu), {-1}), sum(a, {-1}), tol, tol * 10);
    require_matches(mean(a.to(kGpu), {-1}, true), mean(a, {-1}, true), tol, tol);
    require_matches(amax(a.to(kGpu), {-1}), amax(a, {-1}));
    require_matches(amin(a.to(kGpu), {0, 2}), amin(a, {0, 2}));
    require_matches(sum(a.to(kGpu), {0, 2}, true), sum(a, {0, 2}, true), tol, tol * 50);
    require_matches(mean(a.to(kGpu)), mean(a), tol, tol);
    REQUIRE(equal(argmax(a.to(kGpu), 2).to(Device::cpu()), argmax(a, 2)));
    REQUIRE(equal(argmax(a.to(kGpu), 1, true).to(Device::cpu()), argmax(a, 1, true)));
  }
  Tensor wide = random_input({2, 5000}, DType::F32, 41);
  require_matches(sum(wide.to(kGpu), {1}), sum(wide, {1}), 1e-4, 1e-3);
  Tensor ints = random_input({4, 9}, DType::I64, 42, -1000, 1000);
  REQUIRE(equal(sum(ints.to(kGpu), {1}).to(Device::cpu()), sum(ints, {1})));
}

TEST_CASE("softmax and log_softmax") {
  for (DType dtype : kFloats) {
    INFO(dtype_name(dtype));
    Tensor a = random_input({5, 3, 33}, dtype, 50, -8, 8);
    require_matches(softmax(a.to(kGpu), -1), softmax(a, -1));
    require_matches(log_softmax(a.to(kGpu), -1), log_softmax(a, -1));
    require_matches(softmax(a.to(kGpu), 1), softmax(a, 1));
  }
}

TEST_CASE("matmul, bmm and linear through cuBLAS") {
  for (DType dtype : kFloats) {
    INFO(dtype_name(dtype));
    // 16-bit GEMMs accumulate in f32 on both sides but round differently: relative to the
    // sum of |products| (k * 4 here) a few ulps of the dtype.
    const double atol = dtype == DType::BF16 ? 0.5 : dtype == DType::F16 ? 0.1 : 1e-3;
    Tensor a = random_input({2, 33, 64}, dtype, 60);
    Tensor b = random_input({2, 64, 17}, dtype, 61);
    require_matches(bmm(a.to(kGpu), b.to(kGpu)), bmm(a, b), rtol_for(dtype), atol);
    require_matches(matmul(a.to(kGpu), b.select(0, 1).to(kGpu)), matmul(a, b.select(0, 1)), rtol_for(dtype), atol);
    require_matches(matmul(a.select(0, 0).to(kGpu), b.select(0, 1).to(kGpu)), matmul(a.select(0, 0), b.select(0, 1)),
                    rtol_for(dtype), atol);
    Tensor x = random_input({3, 11, 64}, dtype, 62);
    Tensor w = random_input({48, 64}, dtype, 63);
    Tensor bias = random_input({48}, dtype, 64);
    require_matches(linear(x.to(kGpu), w.to(kGpu), bias.to(kGpu)), linear(x, w, bias), rtol_for(dtype), atol);
    require_matches(linear(x.to(kGpu), w.to(kGpu)), linear(x, w), rtol_for(dtype), atol);
    // A transposed weight view (not contiguous) works too.
    Tensor wt = random_input({64, 48}, dtype, 65);
    require_matches(linear(x.to(kGpu), wt.to(kGpu).transpose(0, 1)), linear(x, wt.transpose(0, 1)), rtol_for(dtype),
                    atol);
  }
}

TEST_CASE("matmul reads transposed, narrowed and broadcast operands as the CPU does") {
  for (DType dtype : {DType::F32, DType::BF16}) {
    INFO(dtype_name(dtype));
    const double atol = dtype == DType::BF16 ? 0.5 : 1e-3;
    // The experts' product: x [E, m, H] @ W[E, I, H].transpose(1, 2), read in place.
    const Tensor x = random_input({3, 5, 64}, dtype, 66), w = random_input({3, 40, 64}, dtype, 67);
    require_matches(bmm(x.to(kGpu), w.to(kGpu).transpose(1, 2)), bmm(x, w.transpose(1, 2)), rtol_for(dtype), atol);
    // A transposed left operand, and both transposed.
    const Tensor at = random_input({3, 64, 5}, dtype, 68);
    require_matches(bmm(at.to(kGpu).transpose(1, 2), w.to(kGpu).transpose(1, 2)),
                    bmm(at.transpose(1, 2), w.transpose(1, 2)), rtol_for(dtype), atol);
    // Narrowed columns (padded rows), a narrowed batch range, and one row.
    const Tensor wide = random_input({3, 64, 50}, dtype, 69);
    require_matches(bmm(x.to(kGpu), wide.to(kGpu).narrow(2, 10, 17)), bmm(x, wide.narrow(2, 10, 17)), rtol_for(dtype),
                    atol);
    require_matches(bmm(x.to(kGpu).narrow(0, 1, 2), w.to(kGpu).narrow(0, 1, 2).transpose(1, 2)),
                    bmm(x.narrow(0, 1, 2), w.narrow(0, 1, 2).transpose(1, 2)), rtol_for(dtype), atol);
    require_matches(matmul(x.to(kGpu).narrow(1, 2, 1), w.to(kGpu).transpose(1, 2)),
                    matmul(x.narrow(1, 2, 1), w.transpose(1, 2)), rtol_for(dtype), atol);
    // A 3-D left operand that is not contiguous against a shared 2-D right one, and an
    // expanded batch (stride 0), which is copied.
    require_matches(matmul(at.to(kGpu).transpose(1, 2), w.to(kGpu).select(0, 0).transpose(0, 1)),
                    matmul(at.transpose(1, 2), w.select(0, 0).transpose(0, 1)), rtol_for(dtype), atol);
    const Tensor one = random_input({1, 64, 7}, dtype, 70);
    require_matches(bmm(x.to(kGpu), one.to(kGpu).expand({3, 64, 7})), bmm(x, one.expand({3, 64, 7})), rtol_for(dtype),
                    atol);
  }
}

TEST_CASE("f32 GEMM is exact f32 unless TF32 is allowed") {
  REQUIRE_FALSE(cuda::allow_tf32());
  // 1 + 2^-20 is not representable in TF32 (10 mantissa bits): an exact f32 product keeps it.
  Tensor a = Tensor::full({16, 16}, 1.0 + std::ldexp(1.0, -20), DType::F32);
  Tensor b = Tensor::zeros({16, 16}, DType::F32);
  b.select(0, 0).fill(1.0);
  Tensor c = matmul(a.to(kGpu), b.to(kGpu)).to(Device::cpu());
  REQUIRE(c.select(0, 0).select(0, 0).item<double>() == 1.0 + std::ldexp(1.0, -20));
}

TEST_CASE("embedding, index_select and cat") {
  Tensor weight = random_input({50, 24}, DType::BF16, 70);
  Tensor ids = Tensor::from_vector<int64_t>({3, 0, 49, 3, 17, 8}, {2, 3});
  require_matches(embedding(weight.to(kGpu), ids.to(kGpu)), embedding(weight, ids));
  Tensor ids32 = ids.to(DType::I32);
  require_matches(embedding(weight.to(kGpu), ids32.to(kGpu)), embedding(weight, ids32));
  Tensor bad = Tensor::from_vector<int64_t>({1, 50}, {2});
  REQUIRE_THROWS_AS(embedding(weight.to(kGpu), bad.to(kGpu)), ValueError);

  Tensor a = random_input({4, 6, 5}, DType::F32, 71);
  Tensor index = Tensor::from_vector<int32_t>({5, 0, 2, 2}, {4});
  require_matches(index_select(a.to(kGpu), 1, index.to(kGpu)), index_select(a, 1, index));
  require_matches(cat({a.to(kGpu), a.narrow(1, 0, 2).to(kGpu)}, 1), cat({a, a.narrow(1, 0, 2)}, 1));
}

// CPU references written with the CPU ops.
Tensor rms_norm_reference(const Tensor& x, const Tensor& w, double eps) {
  Tensor xf = x.to(DType::F64);
  Tensor scale = rsqrt(add(mean(mul(xf, xf), {-1}, true), eps));
  return mul(mul(xf, scale), w.to(DType::F64)).to(x.dtype());
}

Tensor layer_norm_reference(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  Tensor xf = x.to(DType::F64);
  Tensor centred = sub(xf, mean(xf, {-1}, true));
  Tensor scale = rsqrt(add(mean(mul(centred, centred), {-1}, true), eps));
  return add(mul(mul(centred, scale), w.to(DType::F64)), b.to(DType::F64)).to(x.dtype());
}

TEST_CASE("rms_norm and layer_norm over the last dim") {
  for (DType dtype : kFloats) {
    INFO(dtype_name(dtype));
    Tensor x = random_input({3, 7, 96}, dtype, 80);
    Tensor w = random_input({96}, dtype, 81, 0.5, 1.5);
    Tensor b = random_input({96}, dtype, 82);
    require_matches(cuda::rms_norm(x.to(kGpu), w.to(kGpu), 1e-6), rms_norm_reference(x, w, 1e-6));
    require_matches(cuda::layer_norm(x.to(kGpu), w.to(kGpu), b.to(kGpu), 1e-5), layer_norm_reference(x, w, b, 1e-5));
    // The public ops of ops.hpp hand CUDA tensors to the same kernels (weight and bias optional).
    require_matches(rms_norm(x.to(kGpu), w.to(kGpu), 1e-6), rms_norm(x, w, 1e-6));
    require_matches(layer_norm(x.to(kGpu), w.to(kGpu), b.to(kGpu), 1e-5), layer_norm(x, w, b, 1e-5));
    require_matches(layer_norm(x.to(kGpu), Tensor(), Tensor(), 1e-5), layer_norm(x, Tensor(), Tensor(), 1e-5));
    require_matches(rms_norm(x.to(kGpu), Tensor(), 1e-6), rms_norm(x, Tensor(), 1e-6));
  }
}

TEST_CASE("rotary embedding (rotate-half)") {
  const int64_t tokens = 5, heads = 3, head_dim = 8, half = head_dim / 2;
  Tensor x = random_input({tokens, heads, head_dim}, DType::F32, 90);
  Tensor angle = random_input({tokens, half}, DType::F32, 91, -3, 3);
  Tensor c = Tensor::empty({tokens, half}, DType::F32);
  Tensor s = Tensor::empty({tokens, half}, DType::F32);
  for (int64_t i = 0; i < tokens * half; ++i) {
    c.data<float>()[i] = std::cos(angle.data<float>()[i]);
    s.data<float>()[i] = std::sin(angle.data<float>()[i]);
  }
  // Reference: [x1, x2] -> [x1 c - x2 s, x2 c + x1 s] with c, s broadcast over heads, each product
  // rounded to x's dtype before the sum (as torch's three ops): f32 products and sums are exact
  // IEEE operations on both sides, and so are the bf16 roundings.
  Tensor cb = c.unsqueeze(1), sb = s.unsqueeze(1);
  // The reference computes in x's compute dtype: f64 for f64, else f32.
  auto reference = [&](const Tensor& in) {
    const DType compute = in.dtype() == DType::F64 ? DType::F64 : DType::F32;
    const Tensor x1 = in.narrow(2, 0, half).to(compute), x2 = in.narrow(2, half, half).to(compute);
    const Tensor cc = cb.to(compute), sc = sb.to(compute);
    auto product = [&](const Tensor& a, const Tensor& b) { return mul(a, b).to(in.dtype()).to(compute); };
    return cat({sub(product(x1, cc), product(x2, sc)), add(product(x2, cc), product(x1, sc))}, 2).to(in.dtype());
  };
  require_matches(cuda::rotary_embedding(x.to(kGpu), c.to(kGpu), s.to(kGpu)), reference(x), 1e-6, 1e-6);
  const Tensor xb = x.to(DType::BF16);
  require_matches(cuda::rotary_embedding(xb.to(kGpu), c.to(kGpu), s.to(kGpu)), reference(xb), 0, 0);
  // f64 x takes f64 tables and stays in f64.
  const Tensor xd = x.to(DType::F64);
  require_matches(cuda::rotary_embedding(xd.to(kGpu), c.to(DType::F64).to(kGpu), s.to(DType::F64).to(kGpu)),
                  reference(xd), 1e-12, 1e-12);
}

TEST_CASE("top-k routing over the last dim") {
  const int64_t tokens = 40, experts = 64, k = 4;
  Tensor logits = random_input({tokens, experts}, DType::F32, 100);
  Tensor probs = softmax(logits, -1);
  auto [values, indices] = cuda::topk(probs.to(kGpu), k);
  REQUIRE(values.shape() == Shape{tokens, k});
  std::vector<float> p = probs.to_vector<float>();
  std::vector<float> v = values.to_vector<float>();
  std::vector<int64_t> idx = indices.to_vector<int64_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int64_t> order(experts);
    for (int64_t e = 0; e < experts; ++e) order[size_t(e)] = e;
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return p[size_t(t * experts + x)] > p[size_t(t * experts + y)]; });
    for (int64_t j = 0; j < k; ++j) {
      REQUIRE(idx[size_t(t * k + j)] == order[size_t(j)]);
      REQUIRE(v[size_t(t * k + j)] == p[size_t(t * experts + order[size_t(j)])]);
    }
  }
  REQUIRE_THROWS_AS(cuda::topk(probs.to(kGpu), 17), ValueError);
}

TEST_CASE("apply_rotary and causal_attention on CUDA tensors match the CPU kernels") {
  struct Case {
    int64_t seq, past, heads, kv_heads, head_dim;
    std::vector<int64_t> kv_head_of;  // empty: grouped-query default
  };
  // Prefill (past 0), a decode step, uneven grouped-query maps, a rank's slice of the heads
  // starting mid-group, head_dims whose heads are not 16-byte aligned (one GEMM per head instead
  // of a pointer-batched one), and a prefill long enough for several query blocks of the scores.
  const std::vector<Case> cases = {
      {7, 0, 4, 2, 8, {}},  {1, 9, 6, 2, 16, {}}, {5, 3, 3, 3, 8, {}},  {6, 2, 3, 2, 8, {0, 1, 1}},
      {4, 0, 2, 1, 64, {}}, {5, 3, 4, 2, 4, {}},  {3, 12, 4, 2, 6, {}}, {2048, 0, 32, 8, 8, {}},
  };
  for (DType dtype : {DType::F32, DType::BF16, DType::F64}) {
    uint64_t seed = 300;
    for (const Case& c : cases) {
      if (dtype != DType::F32 && c.seq > 64) continue;  // the long case once is enough
      INFO("dtype " << dtype_name(dtype) << " seq " << c.seq << " past " << c.past << " heads " << c.heads << "/"
                    << c.kv_heads << " head_dim " << c.head_dim);
      const int64_t total = c.past + c.seq;
      const Tensor q = random_input({c.seq, c.heads, c.head_dim}, dtype, seed++);
      const Tensor k = random_input({total, c.kv_heads, c.head_dim}, dtype, seed++);
      const Tensor v = random_input({total, c.kv_heads, c.head_dim}, dtype, seed++);
      std::vector<int64_t> positions(size_t(c.seq));
      for (int64_t i = 0; i < c.seq; ++i) positions[size_t(i)] = c.past + i;
      const RotaryTables cpu_tables = rotary_tables(positions, c.head_dim, 10000.0, dtype);
      const RotaryTables gpu_tables = rotary_tables(positions, c.head_dim, 10000.0, dtype, kGpu);
      REQUIRE(gpu_tables.cos.device() == kGpu);
      // Rotary rounds like the CPU kernel: exact in bf16, f32 / f64 up to the CPU's own contraction.
      const double rotary_tol = dtype == DType::BF16 ? 0 : dtype == DType::F32 ? 1e-6 : 1e-12;
      require_matches(apply_rotary(q.to(kGpu), gpu_tables), apply_rotary(q, cpu_tables), rotary_tol, rotary_tol);
      // bf16 attention rounds the probabilities to bf16 before the product with v (as transformers'
      // eager attention); the CPU keeps them in f32.
      const double tol = dtype == DType::BF16 ? 3e-2 : 1e-4;
      // A cached prefix: k and v as the first `total` rows of a longer buffer, as the KV cache hands them out.
      Tensor k_buffer = Tensor::zeros({total + 5, c.kv_heads, c.head_dim}, dtype, kGpu);
      Tensor v_buffer = Tensor::zeros({total + 5, c.kv_heads, c.head_dim}, dtype, kGpu);
      k_buffer.narrow(0, 0, total).copy_from(k);
      v_buffer.narrow(0, 0, total).copy_from(v);
      require_matches(
          causal_attention(q.to(kGpu), k_buffer.narrow(0, 0, total), v_buffer.narrow(0, 0, total), c.kv_head_of),
          causal_attention(q, k, v, c.kv_head_of), tol, tol);
    }
  }
}

TEST_CASE("causal_attention on CUDA refuses mixed devices and bad head maps") {
  const Tensor q = random_input({3, 2, 8}, DType::F32, 400), k = random_input({3, 2, 8}, DType::F32, 401);
  CHECK_THROWS_AS(causal_attention(q.to(kGpu), k, k.to(kGpu)), DeviceError);
  CHECK_THROWS_AS(causal_attention(q.to(kGpu), k.to(kGpu), k.to(kGpu), {0, 2}), ValueError);
  const RotaryTables cpu_tables = rotary_tables({0, 1, 2}, 8, 10000.0, DType::F32);
  CHECK_THROWS_AS(apply_rotary(q.to(kGpu), cpu_tables), DeviceError);
}

TEST_CASE("topk along any dim on CUDA matches the CPU") {
  const Tensor x = random_input({6, 9, 5}, DType::F32, 410);
  for (int64_t dim : {0, 1, 2, -1}) {
    auto [cv, ci] = topk(x, 3, dim);
    auto [gv, gi] = topk(x.to(kGpu), 3, dim);
    require_matches(gv, cv, 0, 0);
    CHECK(equal(gi.to(Device::cpu()), ci));
  }
}

TEST_CASE("comparisons take tensors on the GPU (copied to the host)") {
  const Tensor a = random_input({4, 5}, DType::F32, 420);
  const Tensor b = add(a, Tensor::full({}, 0.25, DType::F32));
  CHECK(equal(a.to(kGpu), a));
  CHECK(allclose(b.to(kGpu), b.to(kGpu)));
  CHECK_FALSE(allclose(a.to(kGpu), b, 0, 0.1));
  CHECK(max_abs_diff(a.to(kGpu), b.to(kGpu)) == Approx(0.25));
}
