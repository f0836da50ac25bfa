// Every differentiable op of autograd/ops.hpp against f64 central finite differences, on odd
// shapes, broadcast shapes and non-contiguous inputs (transposed and narrowed views).
#include "autograd/node.hpp"
#include "autograd_test_util.hpp"

using In = std::vector<Tensor>;

TEST_CASE("gradcheck fails a backward that is wrong", "[autograd][gradcheck]") {
  // Forward doubles, backward claims the derivative is 3.
  auto wrong_double = [](const In& in) {
    Tensor out = dtensor::mul(in[0], 2.0);
    return ag::record("wrong_double", {in[0]}, {}, out,
                      [](const ag::FunctionNode&, const Tensor& grad) { return ag::Grads{dtensor::mul(grad, 3.0)}; });
  };
  ag::GradcheckResult result = ag::gradcheck(wrong_double, {normal({2, 3}, 1)});
  CHECK_FALSE(result.passed);
  CHECK(result.report.find("inputs[0]") != std::string::npos);
  CHECK(result.max_abs_error > 0.1);
}

TEST_CASE("gradcheck refuses f32 inputs and outputs that need no gradient", "[autograd][gradcheck]") {
  auto identity = [](const In& in) { return ag::mul(in[0], 1.0); };
  CHECK_THROWS_AS(ag::gradcheck(identity, {normal({2}, 1, DType::F32)}), dtensor::DTypeError);
  auto constant = [](const In&) { return Tensor::zeros({2}, DType::F64); };
  CHECK_THROWS_AS(ag::gradcheck(constant, {normal({2}, 1)}), dtensor::ValueError);
}

TEST_CASE("binary elementwise ops", "[autograd][elementwise]") {
  auto [name, op] = GENERATE(table<const char*, Tensor (*)(const Tensor&, const Tensor&)>({
      {"add", ag::add},
      {"sub", ag::sub},
      {"mul", ag::mul},
      {"div", ag::div},
      {"maximum", ag::maximum},
      {"minimum", ag::minimum},
  }));
  INFO(name);
  auto fn = [op = op](const In& in) { return op(in[0], in[1]); };
  // div's denominator stays away from zero; the others see it as any operand.
  auto second = [&](const Shape& shape, uint64_t seed) { return uniform(shape, seed, 0.5, 2.0); };
  SECTION("same odd shape") { require_gradcheck(fn, {normal({3, 5}, 1), second({3, 5}, 2)}); }
  SECTION("broadcast both ways") { require_gradcheck(fn, {normal({2, 1, 5}, 3), second({3, 5}, 4)}); }
  SECTION("broadcast size-one dims") { require_gradcheck(fn, {normal({3, 1}, 5), second({1, 4}, 6)}); }
  SECTION("transposed and narrowed views") {
    require_gradcheck(fn, {transposed_normal(3, 4, 7), uniform({3, 7}, 8, 0.5, 2.0).narrow(1, 2, 4)});
  }
}

TEST_CASE("maximum and minimum split a tie equally", "[autograd][elementwise]") {
  Tensor a = Tensor::from_vector<double>({1.0, 2.0, 3.0}, {3});
  Tensor b = Tensor::from_vector<double>({2.0, 2.0, 1.0}, {3});
  ag::set_requires_grad(a);
  ag::set_requires_grad(b);
  ag::backward(ag::sum(ag::maximum(a, b)));
  CHECK(ag::grad(a).to_vector<double>() == std::vector<double>{0.0, 0.5, 1.0});
  CHECK(ag::grad(b).to_vector<double>() == std::vector<double>{1.0, 0.5, 0.0});
}

TEST_CASE("scalar forms, where, masked_fill", "[autograd][elementwise]") {
  SECTION("add and mul by a scalar") {
    require_gradcheck([](const In& in) { return ag::mul(ag::add(in[0], 1.5), -2.5); }, {narrowed_normal({3, 2}, 1)});
  }
  SECTION("where broadcasts the condition and both values") {
    Tensor cond = Tensor::from_vector<uint8_t>({1, 0, 0, 1, 1}, {5});
    require_gradcheck([cond](const In& in) { return ag::where(cond, in[0], in[1]); },
                      {normal({3, 5}, 2), normal({3, 1}, 3)});
  }
  SECTION("masked_fill") {
    Tensor mask = Tensor::from_vector<uint8_t>({0, 1, 0, 1}, {4});
    require_gradcheck([mask](const In& in) { return ag::masked_fill(in[0], mask, -9.0); }, {normal({3, 4}, 4)});
  }
}

TEST_CASE("cast sends the gradient back in the input's dtype", "[autograd][elementwise]") {
  Tensor x = normal({4}, 1, DType::F32);
  ag::set_requires_grad(x);
  Tensor y = ag::cast(x, DType::F64);
  REQUIRE(y.dtype() == DType::F64);
  Tensor seed = Tensor::from_vector<double>({1.0, -2.0, 0.5, 4.0}, {4});
  ag::backward(y, seed);
  REQUIRE(ag::grad(x).dtype() == DType::F32);
  CHECK(ag::grad(x).to_vector<float>() == std::vector<float>{1.0f, -2.0f, 0.5f, 4.0f});
  CHECK(ag::cast(x, DType::F32).autograd_meta() == x.autograd_meta());  // the same tensor, no node
}

TEST_CASE("to_device on the same device is the tensor itself", "[autograd][elementwise]") {
  Tensor x = normal({2}, 1);
  ag::set_requires_grad(x);
  CHECK(ag::to_device(x, dtensor::Device::cpu()).autograd_meta() == x.autograd_meta());
}

TEST_CASE("unary ops", "[autograd][unary]") {
  auto [name, op, low] = GENERATE(table<const char*, Tensor (*)(const Tensor&), double>({
      {"neg", ag::neg, -2.0},
      {"abs", ag::abs, -2.0},
      {"exp", ag::exp, -2.0},
      {"log", ag::log, 0.2},
      {"sqrt", ag::sqrt, 0.2},
      {"rsqrt", ag::rsqrt, 0.2},
      {"tanh", ag::tanh, -2.0},
      {"relu", ag::relu, -2.0},
      {"silu", ag::silu, -2.0},
      {"gelu", ag::gelu, -2.0},
  }));
  INFO(name);
  auto fn = [op = op](const In& in) { return op(in[0]); };
  SECTION("odd shape") { require_gradcheck(fn, {uniform({3, 5}, 1, low, 2.0)}); }
  SECTION("transposed view") { require_gradcheck(fn, {uniform({5, 3}, 2, low, 2.0).transpose(0, 1)}); }
}

TEST_CASE("relu and abs have gradient zero at zero", "[autograd][unary]") {
  Tensor x = Tensor::from_vector<double>({-1.0, 0.0, 2.0}, {3});
  ag::set_requires_grad(x);
  ag::backward(ag::sum(ag::add(ag::relu(x), ag::abs(x))));
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{-1.0, 0.0, 2.0});
}

TEST_CASE("reductions", "[autograd][reduce]") {
  using Reduction = Tensor (*)(const Tensor&, const std::vector<int64_t>&, bool);
  auto [name, op] = GENERATE(table<const char*, Reduction>({
      {"sum", ag::sum},
      {"mean", ag::mean},
      {"amax", ag::amax},
      {"amin", ag::amin},
  }));
  INFO(name);
  using Dims = std::vector<int64_t>;
  auto [dims, keepdim] = GENERATE(table<Dims, bool>({
      {Dims{}, false},
      {Dims{1}, false},
      {Dims{1}, true},
      {Dims{0, 2}, false},
      {Dims{-1}, true},
  }));
  INFO("dims " << dims.size() << " keepdim " << keepdim);
  auto fn = [op = op, dims = dims, keepdim = keepdim](const In& in) { return op(in[0], dims, keepdim); };
  require_gradcheck(fn, {narrowed_normal({2, 3, 5}, 1)});
}

TEST_CASE("amax splits the gradient between tied maxima", "[autograd][reduce]") {
  Tensor x = Tensor::from_vector<double>({3.0, 1.0, 3.0, 2.0}, {2, 2});
  ag::set_requires_grad(x);
  ag::backward(ag::amax(x));
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{0.5, 0.0, 0.5, 0.0});
}

TEST_CASE("matrix products", "[autograd][matmul]") {
  auto matmul = [](const In& in) { return ag::matmul(in[0], in[1]); };
  SECTION("2-D") { require_gradcheck(matmul, {normal({3, 4}, 1), normal({4, 5}, 2)}); }
  SECTION("2-D transposed views") {
    require_gradcheck(matmul, {transposed_normal(3, 4, 3), transposed_normal(4, 2, 4)});
  }
  SECTION("batched") { require_gradcheck(matmul, {normal({2, 3, 4}, 5), normal({2, 4, 3}, 6)}); }
  SECTION("batch times one matrix") {
    require_gradcheck(matmul, {normal({2, 3, 4}, 7).transpose(0, 1), narrowed_normal({4, 5}, 8)});
  }
  SECTION("bmm") {
    require_gradcheck([](const In& in) { return ag::bmm(in[0], in[1]); },
                      {normal({2, 4, 3}, 9).transpose(1, 2), normal({2, 4, 2}, 10)});
  }
}

TEST_CASE("linear", "[autograd][matmul]") {
  SECTION("with bias, 3-D input") {
    require_gradcheck([](const In& in) { return ag::linear(in[0], in[1], in[2]); },
                      {normal({2, 3, 4}, 1), normal({5, 4}, 2), normal({5}, 3)});
  }
  SECTION("without bias, transposed weight view") {
    require_gradcheck([](const In& in) { return ag::linear(in[0], in[1]); },
                      {narrowed_normal({3, 4}, 4), transposed_normal(5, 4, 5)});
  }
  SECTION("frozen weight: only the input and bias get gradients") {
    Tensor weight = normal({5, 4}, 6);
    require_gradcheck([weight](const In& in) { return ag::linear(in[0], weight, in[1]); },
                      {normal({3, 4}, 7), normal({5}, 8)});
  }
}

TEST_CASE("views", "[autograd][views]") {
  Tensor x = narrowed_normal({2, 3, 4}, 1);
  using Fn = ag::GradcheckFn;
  auto [name, fn] = GENERATE(table<const char*, Fn>({
      {"reshape",
       [](const In& in) {
         return ag::reshape(in[0], {4, -1});
       }},
      {"view of a contiguous copy",
       [](const In& in) {
         return ag::view(ag::contiguous(in[0]), {3, 8});
       }},
      {"flatten", [](const In& in) { return ag::flatten(in[0], 1); }},
      {"unsqueeze, squeeze", [](const In& in) { return ag::squeeze(ag::unsqueeze(in[0], 1), 1); }},
      {"expand",
       [](const In& in) {
         return ag::expand(ag::unsqueeze(in[0], 0), {3, 2, 3, 4});
       }},
      {"transpose", [](const In& in) { return ag::transpose(in[0], 0, 2); }},
      {"permute",
       [](const In& in) {
         return ag::permute(in[0], {2, 0, 1});
       }},
      {"narrow", [](const In& in) { return ag::narrow(in[0], 2, 1, 2); }},
      {"select", [](const In& in) { return ag::select(in[0], -2, 1); }},
      {"slice with a step", [](const In& in) { return ag::slice(in[0], 2, 0, 4, 2); }},
      {"clone", [](const In& in) { return ag::clone(in[0]); }},
  }));
  INFO(name);
  require_gradcheck(fn, {x});
}

TEST_CASE("softmax and log_softmax", "[autograd][normalize]") {
  auto dim = GENERATE(0, 1, -1);
  INFO("dim " << dim);
  SECTION("softmax") {
    require_gradcheck([dim](const In& in) { return ag::softmax(in[0], dim); }, {narrowed_normal({3, 2, 5}, 1)});
  }
  SECTION("log_softmax") {
    require_gradcheck([dim](const In& in) { return ag::log_softmax(in[0], dim); }, {normal({3, 2, 5}, 2)});
  }
}

TEST_CASE("layer_norm and rms_norm", "[autograd][normalize]") {
  Tensor x = narrowed_normal({2, 3, 5}, 1);
  Tensor weight = normal({5}, 2);
  Tensor bias = normal({5}, 3);
  SECTION("layer_norm with weight and bias") {
    require_gradcheck([](const In& in) { return ag::layer_norm(in[0], in[1], in[2], 1e-5); }, {x, weight, bias});
  }
  SECTION("layer_norm with bias only") {
    require_gradcheck([](const In& in) { return ag::layer_norm(in[0], Tensor(), in[1], 1e-5); }, {x, bias});
  }
  SECTION("layer_norm without parameters") {
    require_gradcheck([](const In& in) { return ag::layer_norm(in[0], Tensor(), Tensor(), 1e-5); }, {x});
  }
  SECTION("rms_norm") {
    require_gradcheck([](const In& in) { return ag::rms_norm(in[0], in[1], 1e-6); }, {x, weight});
  }
  SECTION("rms_norm, frozen weight") {
    require_gradcheck([weight](const In& in) { return ag::rms_norm(in[0], weight, 1e-6); },
                      {transposed_normal(3, 5, 4)});
  }
}

TEST_CASE("gathers sum the gradients of repeated indices", "[autograd][gather]") {
  SECTION("embedding") {
    Tensor ids = Tensor::from_vector<int64_t>({4, 0, 4, 2, 6, 4}, {2, 3});
    require_gradcheck([ids](const In& in) { return ag::embedding(in[0], ids); }, {narrowed_normal({7, 3}, 1)});
  }
  SECTION("index_select along a middle dim") {
    Tensor index = Tensor::from_vector<int32_t>({2, 0, 2, 3, 2}, {5});
    require_gradcheck([index](const In& in) { return ag::index_select(in[0], 1, index); },
                      {normal({4, 2, 3}, 2).transpose(0, 1)});
  }
  SECTION("topk values") {
    auto dim = GENERATE(0, -1);
    require_gradcheck([dim](const In& in) { return ag::topk(in[0], 2, dim).first; }, {narrowed_normal({3, 5}, 3)});
  }
}

TEST_CASE("cat, stack, chunk and split", "[autograd][concat]") {
  SECTION("cat of three, one without a gradient") {
    Tensor constant = normal({2, 1}, 1);
    require_gradcheck(
        [constant](const In& in) {
          return ag::cat({in[0], constant, in[1]}, -1);
        },
        {normal({2, 3}, 2), transposed_normal(2, 2, 3)});
  }
  SECTION("stack") {
    require_gradcheck(
        [](const In& in) {
          return ag::stack({in[0], in[1]}, 1);
        },
        {normal({2, 3}, 4), narrowed_normal({2, 3}, 5)});
  }
  SECTION("chunk, a piece unused") {
    // 7 rows in chunks of 3: pieces of 3, 3 and 1 rows; the middle one gets no gradient.
    require_gradcheck(
        [](const In& in) {
          std::vector<Tensor> pieces = ag::chunk(in[0], 3, 0);
          REQUIRE(pieces.size() == 3);
          return ag::cat({ag::mul(pieces[0], 2.0), pieces[2]}, 0);
        },
        {normal({7, 2}, 6)});
  }
  SECTION("split, pieces used twice") {
    require_gradcheck(
        [](const In& in) {
          std::vector<Tensor> pieces = ag::split(in[0], {1, 3}, 1);
          return ag::mul(ag::sum(pieces[0], {1}, true), ag::add(pieces[1], pieces[1]));
        },
        {transposed_normal(3, 4, 7)});
  }
}

TEST_CASE("apply_rotary", "[autograd][attention]") {
  dtensor::RotaryTables tables = dtensor::rotary_tables({3, 4, 5}, 6, 10000.0, DType::F64);
  require_gradcheck([tables](const In& in) { return ag::apply_rotary(in[0], tables); },
                    {normal({2, 3, 6}, 1).transpose(0, 1)});  // [3 positions, 2 heads, 6] with permuted strides
}

TEST_CASE("causal_attention", "[autograd][attention]") {
  auto attention = [](std::vector<int64_t> kv_head_of) {
    return [kv_head_of](const In& in) { return ag::causal_attention(in[0], in[1], in[2], kv_head_of); };
  };
  SECTION("grouped query heads, cached keys before the queries") {
    // 3 queries after 2 cached positions; 4 query heads over 2 KV heads.
    require_gradcheck(attention({}), {normal({3, 4, 4}, 1), normal({5, 2, 4}, 2), normal({5, 2, 4}, 3)});
  }
  SECTION("an explicit head map, one KV head unread, non-contiguous q") {
    require_gradcheck(attention({1, 0, 1}),
                      {normal({3, 4, 2}, 4).permute({1, 0, 2}), normal({4, 3, 2}, 5), normal({4, 3, 2}, 6)});
  }
}

TEST_CASE("a decoder-like composition gradchecks as a whole", "[autograd][composition]") {
  // embedding -> rms_norm -> linear -> silu -> linear (tied to the embedding) -> log_softmax, and
  // the mean negative log-likelihood of the targets picked by a one-hot mask.
  Tensor ids = Tensor::from_vector<int64_t>({3, 1, 4, 1}, {4});
  Tensor one_hot = Tensor::zeros({4, 6}, DType::F64);
  for (auto [row, target] : {std::pair{0, 1}, {1, 4}, {2, 1}, {3, 5}})
    one_hot.select(0, row).select(0, target).fill(1.0);
  auto loss = [ids, one_hot](const In& in) {
    const Tensor& embed = in[0];
    Tensor h = ag::rms_norm(ag::embedding(embed, ids), in[1], 1e-6);
    h = ag::linear(ag::silu(ag::linear(h, in[2], in[3])), in[4]);
    Tensor logits = ag::linear(h, embed);
    return ag::mul(ag::sum(ag::mul(ag::log_softmax(logits, -1), one_hot)), -0.25);
  };
  require_gradcheck(loss, {normal({6, 3}, 1), normal({3}, 2), normal({5, 3}, 3), normal({5}, 4), normal({3, 5}, 5)});
}
