// The autograd engine through its public API: accumulation into leaves, the no-grad scope,
// nothing recorded when nothing needs a gradient, freeing saved tensors, the freed-graph error,
// argument errors, and 16-bit gradients against f64 ones.
#include "autograd/node.hpp"
#include "autograd_test_util.hpp"

#include <thread>

using dtensor::allclose;

namespace {
// x = [1, -2, 3] as a leaf that requires a gradient.
Tensor leaf_x() {
  Tensor x = Tensor::from_vector<double>({1.0, -2.0, 3.0}, {3});
  ag::set_requires_grad(x);
  return x;
}

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }
}  // namespace

TEST_CASE("a leaf's gradient accumulates over backward calls until zero_grad", "[autograd][engine]") {
  Tensor x = leaf_x();
  auto square_sum = [&] { return ag::sum(ag::mul(x, x)); };  // d/dx = 2x
  ag::backward(square_sum());
  CHECK(values(ag::grad(x)) == std::vector<double>{2.0, -4.0, 6.0});
  Tensor first = ag::grad(x);
  ag::backward(square_sum());
  CHECK(values(ag::grad(x)) == std::vector<double>{4.0, -8.0, 12.0});
  CHECK(ag::grad(x).data_ptr() == first.data_ptr());  // added into the same buffer
  ag::zero_grad(x);
  CHECK(values(first) == std::vector<double>{0.0, 0.0, 0.0});
  ag::backward(square_sum());
  CHECK(values(ag::grad(x)) == std::vector<double>{2.0, -4.0, 6.0});
}

TEST_CASE("a leaf used on several paths receives the sum of their gradients", "[autograd][engine]") {
  Tensor x = leaf_x();
  // y = x * exp(x) + x: dy/dx = exp(x) (1 + x) + 1
  ag::backward(ag::sum(ag::add(ag::mul(x, ag::exp(x)), x)));
  std::vector<double> expected;
  for (double v : {1.0, -2.0, 3.0}) expected.push_back(std::exp(v) * (1.0 + v) + 1.0);
  CHECK(allclose(ag::grad(x), Tensor::from_vector(expected, {3}), 1e-14, 0.0));
}

TEST_CASE("a leaf as the root gets gradient one", "[autograd][engine]") {
  Tensor x = Tensor::from_vector<double>({5.0}, {1});
  ag::set_requires_grad(x);
  ag::backward(x);
  CHECK(values(ag::grad(x)) == std::vector<double>{1.0});
}

TEST_CASE("a non-scalar root takes an explicit gradient", "[autograd][engine]") {
  Tensor x = leaf_x();
  Tensor y = ag::mul(x, 3.0);
  CHECK_THROWS_AS(ag::backward(y), dtensor::ShapeError);
  CHECK_THROWS_AS(ag::backward(y, Tensor::zeros({2}, DType::F64)), dtensor::ShapeError);
  CHECK_THROWS_AS(ag::backward(y, Tensor::zeros({3}, DType::F32)), dtensor::DTypeError);
  ag::backward(y, Tensor::from_vector<double>({1.0, 0.0, -1.0}, {3}));
  CHECK(values(ag::grad(x)) == std::vector<double>{3.0, 0.0, -3.0});
}

TEST_CASE("nothing is recorded when no input requires a gradient", "[autograd][engine]") {
  Tensor a = normal({2, 3}, 1);
  Tensor b = normal({3, 4}, 2);
  Tensor out = ag::softmax(ag::matmul(a, b), -1);
  CHECK_FALSE(ag::requires_grad(out));
  CHECK(ag::grad_fn(out) == nullptr);
  CHECK(out.autograd_meta() == nullptr);  // the slot stayed empty: nothing was allocated for autograd
  CHECK_THROWS_AS(ag::backward(ag::sum(out)), dtensor::ValueError);
}

TEST_CASE("NoGradGuard stops recording on its thread only, and nests", "[autograd][engine]") {
  Tensor x = leaf_x();
  {
    ag::NoGradGuard no_grad;
    Tensor y = ag::exp(x);
    CHECK(ag::grad_fn(y) == nullptr);
    CHECK_FALSE(ag::requires_grad(y));
    {
      ag::NoGradGuard nested;
      CHECK_FALSE(ag::grad_mode_enabled());
    }
    CHECK_FALSE(ag::grad_mode_enabled());  // the inner guard restored the outer one's mode
    bool other_thread_records = false;
    std::thread([&] { other_thread_records = ag::grad_fn(ag::exp(x)) != nullptr; }).join();
    CHECK(other_thread_records);
  }
  CHECK(ag::grad_mode_enabled());
  Tensor z = ag::exp(x);
  REQUIRE(ag::grad_fn(z) != nullptr);
  CHECK(std::string(ag::grad_fn(z)->name()) == "exp");
  CHECK_FALSE(ag::is_leaf(z));
  CHECK(ag::is_leaf(x));
}

TEST_CASE("saved tensors are released once the backward has used them", "[autograd][engine]") {
  Tensor x = leaf_x();
  Tensor y = ag::exp(x);  // exp saves its output
  Tensor loss = ag::sum(y);
  CHECK(y.storage().use_count() == 2);  // y and exp's saved copy
  SECTION("without retain_graph") {
    ag::backward(loss);
    CHECK(y.storage().use_count() == 1);
  }
  SECTION("with retain_graph they stay until the graph goes") {
    ag::backward(loss, Tensor(), /*retain_graph=*/true);
    CHECK(y.storage().use_count() == 2);
    loss = Tensor();
    y = ag::detach(y);  // drops the last reference to exp's node
    CHECK(y.storage().use_count() == 1);
  }
}

TEST_CASE("a second backward through freed saved tensors is an AutogradError", "[autograd][engine]") {
  Tensor x = leaf_x();
  Tensor loss = ag::sum(ag::exp(x));
  SECTION("freed by the first backward") {
    ag::backward(loss);
    CHECK_THROWS_AS(ag::backward(loss), dtensor::AutogradError);
    CHECK_THROWS_WITH(ag::backward(loss), Catch::Contains("exp") && Catch::Contains("retain_graph"));
  }
  SECTION("kept by retain_graph: the second backward accumulates") {
    ag::backward(loss, Tensor(), /*retain_graph=*/true);
    ag::backward(loss);
    CHECK(allclose(ag::grad(x), dtensor::mul(dtensor::exp(x), 2.0), 1e-15, 0.0));
  }
  SECTION("nodes that saved nothing can run again, as in torch") {
    Tensor sum = ag::sum(ag::mul(x, 2.0));
    ag::backward(sum);
    ag::backward(sum);
    CHECK(values(ag::grad(x)) == std::vector<double>{4.0, 4.0, 4.0});
  }
}

TEST_CASE("a graph hundreds of thousands of ops deep runs backward and is freed", "[autograd][engine]") {
  // Freed recursively, each node releasing the next from its destructor, this chain would overflow
  // an 8 MiB stack.
  Tensor x = Tensor::from_vector<double>({0.0}, {1});
  ag::set_requires_grad(x);
  const int depth = 300000;
  Tensor y = x;
  for (int i = 0; i < depth; ++i) y = ag::add(y, 1.0);
  CHECK(y.item<double>() == double(depth));
  ag::backward(y);
  CHECK(values(ag::grad(x)) == std::vector<double>{1.0});
  y = Tensor();  // drops the whole chain
  CHECK(ag::is_leaf(x));
}

TEST_CASE("requires_grad is for floating leaves", "[autograd][engine]") {
  Tensor x = leaf_x();
  Tensor y = ag::mul(x, 2.0);
  CHECK_THROWS_AS(ag::set_requires_grad(y), dtensor::ValueError);
  Tensor ids = Tensor::from_vector<int64_t>({1, 2}, {2});
  CHECK_THROWS_AS(ag::set_requires_grad(ids), dtensor::DTypeError);
  Tensor detached = ag::detach(y);
  CHECK(ag::is_leaf(detached));
  CHECK_FALSE(ag::requires_grad(detached));
  ag::set_requires_grad(x, false);
  CHECK(ag::grad_fn(ag::mul(x, 2.0)) == nullptr);
}

TEST_CASE("16-bit gradients follow the f64 ones", "[autograd][engine]") {
  auto dtype = GENERATE(DType::BF16, DType::F16);
  INFO(dtensor::dtype_name(dtype));
  Tensor x64 = normal({3, 8}, 1);
  Tensor w64 = normal({8}, 2);
  // rms_norm, silu, softmax, linear and a mean: the 16-bit path of each formula family.
  auto loss = [](const Tensor& x, const Tensor& w) {
    Tensor h = ag::silu(ag::rms_norm(x, w, 1e-6));
    Tensor p = ag::softmax(ag::linear(h, ag::reshape(w, {1, 8})), 0);
    return ag::mean(ag::mul(p, ag::tanh(h)));
  };
  auto grads_of = [&](DType dt) {
    Tensor x = x64.to(dt);
    Tensor w = w64.to(dt);
    ag::set_requires_grad(x);
    ag::set_requires_grad(w);
    ag::backward(loss(x, w));
    REQUIRE(ag::grad(x).dtype() == dt);
    REQUIRE(ag::grad(w).dtype() == dt);
    return std::pair{ag::grad(x), ag::grad(w)};
  };
  auto [gx64, gw64] = grads_of(DType::F64);
  auto [gx, gw] = grads_of(dtype);
  // bf16 keeps 8 bits: a few roundings of values of order one.
  double atol = dtype == DType::BF16 ? 3e-2 : 4e-3;
  CHECK(dtensor::max_abs_diff(gx.to(DType::F64), gx64) < atol);
  CHECK(dtensor::max_abs_diff(gw.to(DType::F64), gw64) < atol);
}
