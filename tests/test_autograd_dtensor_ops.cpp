// Gradients of every differentiable DTensor op under random placements (uneven shards and P(sum)
// included) against the local autograd on the full tensors in one process (itself gradchecked).
#include "autograd_dtensor_check.hpp"

using namespace dtensor;
using namespace dtensor::testing;

TEST_CASE("add, sub and mul with broadcasting: gradients equal the full computation's", "[autograd][dtensor]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {{{5, 3}, {5, 3}}, {{5, 3}, {3}}, {{4, 1, 3}, {2, 3}}};
  uint64_t seed = 1;
  for (const auto& [sa, sb] : shapes) {
    std::vector<Tensor> fulls = {f64(sa, seed), f64(sb, seed + 1)};
    sweep(
        fulls, [](const auto& x) { return ag::add(x[0], x[1]); }, [](const auto& x) { return ag::add(x[0], x[1]); },
        seed++);
    sweep(
        fulls, [](const auto& x) { return ag::sub(x[0], x[1]); },
        [](const auto& x) { return ag::add(x[0], ag::mul(x[1], -1.0)); }, seed++);
    sweep(
        fulls, [](const auto& x) { return ag::mul(x[0], x[1]); }, [](const auto& x) { return ag::mul(x[0], x[1]); },
        seed++);
  }
}

TEST_CASE("scalar add and mul, neg, reshape and transpose: gradients equal the full computation's",
          "[autograd][dtensor]") {
  std::vector<Tensor> fulls = {f64({5, 6}, 3)};
  sweep(
      fulls, [](const auto& x) { return ag::neg(ag::mul(ag::add(x[0], 2.0), 3.0)); },
      [](const auto& x) { return ag::mul(ag::add(x[0], 2.0), -3.0); }, 11);
  sweep(
      fulls, [](const auto& x) { return ag::transpose(x[0], 0, 1); },
      [](const auto& x) { return ag::transpose(x[0], 0, 1); }, 12);
  sweep(
      fulls,
      [](const auto& x) {
        return ag::reshape(x[0], {5, 2, 3});
      },
      [](const auto& x) {
        return ag::reshape(x[0], {5, 2, 3});
      },
      13);
}

TEST_CASE("sum and mean over dims, kept or not: gradients equal the full computation's", "[autograd][dtensor]") {
  const std::vector<std::pair<std::vector<int64_t>, bool>> reductions = {
      {{}, false}, {{0}, false}, {{1}, true}, {{0, 2}, false}, {{-1}, true}};
  std::vector<Tensor> fulls = {f64({5, 3, 2}, 4)};
  uint64_t seed = 20;
  for (const auto& [dims, keepdim] : reductions) {
    sweep(
        fulls, [dims, keepdim](const auto& x) { return ag::sum(x[0], dims, keepdim); },
        [dims, keepdim](const auto& x) { return ag::sum(x[0], dims, keepdim); }, seed++);
    sweep(
        fulls, [dims, keepdim](const auto& x) { return ag::mean(x[0], dims, keepdim); },
        [dims, keepdim](const auto& x) { return ag::mean(x[0], dims, keepdim); }, seed++);
  }
}

TEST_CASE("matmul and linear: gradients equal the full computation's", "[autograd][dtensor]") {
  const std::vector<std::pair<Shape, Shape>> products = {{{7, 5}, {5, 3}}, {{2, 5, 6}, {6, 3}}, {{3, 4, 5}, {3, 5, 2}}};
  uint64_t seed = 40;
  for (const auto& [sa, sb] : products) {
    sweep(
        {f64(sa, seed), f64(sb, seed + 1)}, [](const auto& x) { return ag::matmul(x[0], x[1]); },
        [](const auto& x) { return ag::matmul(x[0], x[1]); }, seed);
    seed += 2;
  }
  for (const Shape& sx : std::vector<Shape>{{5, 6}, {2, 3, 6}, {6}}) {
    std::vector<Tensor> fulls = {f64(sx, seed), f64({7, 6}, seed + 1), f64({7}, seed + 2)};
    sweep(
        fulls, [](const auto& x) { return ag::linear(x[0], x[1], x[2]); },
        [](const auto& x) { return ag::linear(x[0], x[1], x[2]); }, seed);
    sweep(
        {fulls[0], fulls[1]}, [](const auto& x) { return ag::linear(x[0], x[1]); },
        [](const auto& x) { return ag::linear(x[0], x[1]); }, seed + 1);
    seed += 3;
  }
}

TEST_CASE("div and bmm: gradients equal the full computation's", "[autograd][dtensor]") {
  Tensor denominator = dtensor::random({5, 3}, DType::F64, {.seed = 160, .a = 0.5, .b = 2.0});
  sweep(
      {f64({5, 3}, 161), denominator}, [](const auto& x) { return ag::div(x[0], x[1]); },
      [](const auto& x) { return ag::div(x[0], x[1]); }, 162);
  sweep(
      {f64({4, 1, 3}, 163), denominator.narrow(0, 0, 2).contiguous()},
      [](const auto& x) { return ag::div(x[0], x[1]); }, [](const auto& x) { return ag::div(x[0], x[1]); }, 164);
  sweep(
      {f64({3, 4, 5}, 165), f64({3, 5, 2}, 166)}, [](const auto& x) { return ag::bmm(x[0], x[1]); },
      [](const auto& x) { return ag::bmm(x[0], x[1]); }, 167);
}

TEST_CASE("views, joins and splits: gradients equal the full computation's", "[autograd][dtensor]") {
  std::vector<Tensor> one = {f64({5, 2, 3}, 170)};
  sweep(
      one,
      [](const auto& x) {
        return ag::view(x[0], {5, 6});
      },
      [](const auto& x) {
        return ag::view(x[0], {5, 6});
      },
      171);
  sweep(
      one, [](const auto& x) { return ag::flatten(x[0], 1, 2); }, [](const auto& x) { return ag::flatten(x[0], 1, 2); },
      172);
  sweep(
      one,
      [](const auto& x) {
        return ag::permute(x[0], {2, 0, 1});
      },
      [](const auto& x) {
        return ag::permute(x[0], {2, 0, 1});
      },
      173);
  for (int64_t dim : {0, 2}) {
    const std::vector<int64_t> sizes = dim == 0 ? std::vector<int64_t>{2, 1, 2} : std::vector<int64_t>{1, 1, 1};
    sweep(
        one, [dim](const auto& x) { return ag::narrow(x[0], dim, 1, 2); },
        [dim](const auto& x) { return ag::narrow(x[0], dim, 1, 2); }, 174 + uint64_t(dim));
    // Pieces 0 and 2 are used, piece 1 not: its part of the gradient is zero.
    sweep(
        one,
        [dim, sizes](const auto& x) {
          std::vector<DTensor> pieces = ag::split(x[0], sizes, dim);
          return ag::cat({pieces[2], ag::mul(pieces[0], 2.0)}, dim);
        },
        [dim, sizes](const auto& x) {
          std::vector<Tensor> pieces = ag::split(x[0], sizes, dim);
          return ag::cat({pieces[2], ag::mul(pieces[0], 2.0)}, dim);
        },
        178 + uint64_t(dim));
    sweep(
        one,
        [dim](const auto& x) {
          std::vector<DTensor> pieces = ag::chunk(x[0], 2, dim);
          return ag::stack({pieces[0], pieces[0]}, 0);
        },
        [dim](const auto& x) {
          std::vector<Tensor> pieces = ag::chunk(x[0], 2, dim);
          return ag::stack({pieces[0], pieces[0]}, 0);
        },
        182 + uint64_t(dim));
  }
  sweep(
      {f64({5, 3}, 190), f64({2, 3}, 191)},
      [](const auto& x) {
        return ag::cat({x[0], x[1]}, 0);
      },
      [](const auto& x) {
        return ag::cat({x[0], x[1]}, 0);
      },
      192);
}

TEST_CASE("maximum, minimum, where, amax and amin: gradients equal the full computation's, ties split",
          "[autograd][dtensor]") {
  Tensor a = dtensor::random({5, 3}, DType::F64, {.seed = 200, .a = -2.0, .b = 2.0});
  Tensor b = dtensor::random({3}, DType::F64, {.seed = 201, .a = -2.0, .b = 2.0});
  Tensor c = dtensor::random({4, 1, 3}, DType::F64, {.seed = 202, .a = -2.0, .b = 2.0});
  for (const auto& [x, y] : {std::pair{a, b}, std::pair{b, a}, std::pair{c, a}}) {
    sweep(
        {x, y}, [](const auto& t) { return ag::maximum(t[0], t[1]); },
        [](const auto& t) { return ag::maximum(t[0], t[1]); }, 203);
    sweep(
        {x, y}, [](const auto& t) { return ag::minimum(t[0], t[1]); },
        [](const auto& t) { return ag::minimum(t[0], t[1]); }, 204);
  }
  // Small integers tie often: the gradient is split between tied inputs and tied maxima, as torch.
  Tensor ties = f64({5, 3}, 205), other = f64({5, 3}, 206);
  sweep_layouts(
      {ties, other}, [](const auto& t) { return ag::maximum(t[0], t[1]); },
      [](const auto& t) { return ag::maximum(t[0], t[1]); }, 207);
  Tensor cond = dtensor::gt(a, Tensor::full({}, 0.0, DType::F64));
  sweep(
      {cond, c, b}, [](const auto& t) { return ag::where(t[0], t[1], t[2]); },
      [](const auto& t) { return ag::where(t[0], t[1], t[2]); }, 208);
  const std::vector<std::pair<std::vector<int64_t>, bool>> reductions = {{{}, false}, {{0}, false}, {{1}, true}};
  uint64_t seed = 210;
  for (const auto& [dims, keepdim] : reductions) {
    auto amax = [dims, keepdim](const auto& t) { return ag::amax(t[0], dims, keepdim); };
    auto amin = [dims, keepdim](const auto& t) { return ag::amin(t[0], dims, keepdim); };
    auto local_amax = [dims, keepdim](const auto& t) { return ag::amax(t[0], dims, keepdim); };
    auto local_amin = [dims, keepdim](const auto& t) { return ag::amin(t[0], dims, keepdim); };
    sweep({a}, amax, local_amax, seed++);
    sweep({a}, amin, local_amin, seed++);
    sweep_layouts({ties}, amax, local_amax, seed++);  // tied maxima share the gradient
    sweep_layouts({ties}, amin, local_amin, seed++);
  }
}

TEST_CASE("unary math and cast run blockwise: gradients equal the full computation's", "[autograd][dtensor]") {
  // Positive inputs for log, sqrt and rsqrt; non-integers so relu's kink at 0 is never hit.
  Tensor positive = dtensor::random({5, 3}, DType::F64, {.seed = 120, .a = 0.5, .b = 2.0});
  Tensor any = dtensor::random({5, 3}, DType::F64, {.seed = 121, .a = -2.0, .b = 2.0});
  using Unary = std::pair<DTensor (*)(const DTensor&), Tensor (*)(const Tensor&)>;
  const std::vector<Unary> on_positive = {{ag::log, ag::log}, {ag::sqrt, ag::sqrt}, {ag::rsqrt, ag::rsqrt}};
  const std::vector<Unary> on_any = {
      {ag::exp, ag::exp}, {ag::tanh, ag::tanh}, {ag::relu, ag::relu}, {ag::silu, ag::silu}, {ag::gelu, ag::gelu}};
  uint64_t seed = 122;
  for (const auto& [input, ops] : {std::pair{positive, on_positive}, std::pair{any, on_any}}) {
    for (const auto& [distributed, local] : ops) {
      sweep(
          {input}, [f = distributed](const auto& x) { return f(x[0]); }, [f = local](const auto& x) { return f(x[0]); },
          seed++);
    }
  }
  // The gradient of a cast comes back in the input's dtype: f64 -> f32 -> f64 loses nothing on
  // small integers. (f32 finite differences are too coarse to gradcheck it; the autograd suite
  // checks the local cast.)
  sweep_layouts(
      {f64({5, 3}, 130)}, [](const auto& x) { return ag::cast(ag::cast(x[0], DType::F32), DType::F64); },
      [](const auto& x) { return ag::cast(ag::cast(x[0], DType::F32), DType::F64); }, 131);
}

TEST_CASE("softmax, log_softmax and the norms: gradients equal the full computation's, weights' too",
          "[autograd][dtensor]") {
  Tensor x = dtensor::random({5, 6}, DType::F64, {.seed = 140, .a = -2.0, .b = 2.0});
  Tensor weight = dtensor::random({6}, DType::F64, {.seed = 141, .a = 0.5, .b = 1.5});
  Tensor bias = dtensor::random({6}, DType::F64, {.seed = 142, .a = -1.0, .b = 1.0});
  for (int64_t dim : {0, 1}) {
    sweep(
        {x}, [dim](const auto& a) { return ag::softmax(a[0], dim); },
        [dim](const auto& a) { return ag::softmax(a[0], dim); }, 143 + uint64_t(dim));
    sweep(
        {x}, [dim](const auto& a) { return ag::log_softmax(a[0], dim); },
        [dim](const auto& a) { return ag::log_softmax(a[0], dim); }, 145 + uint64_t(dim));
  }
  sweep(
      {x, weight, bias}, [](const auto& a) { return ag::layer_norm(a[0], a[1], a[2], 1e-5); },
      [](const auto& a) { return ag::layer_norm(a[0], a[1], a[2], 1e-5); }, 147);
  sweep(
      {x, weight}, [](const auto& a) { return ag::rms_norm(a[0], a[1], 1e-5); },
      [](const auto& a) { return ag::rms_norm(a[0], a[1], 1e-5); }, 148);
}
