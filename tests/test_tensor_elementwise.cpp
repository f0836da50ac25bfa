// Elementwise CPU kernels against naive references;
// shared helpers in tensor_ops_reference.hpp.
#include "tensor_ops_reference.hpp"

// Elementwise ---------------------------------------------------------------------------------

namespace {

using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);

struct BinaryCase {
  Shape a;
  Layout layout_a;
  Shape b;
  Layout layout_b;
};

const std::vector<BinaryCase> kBinaryCases = {
    {{3, 5}, Layout::Contiguous, {3, 5}, Layout::Contiguous},
    {{3, 5}, Layout::Transposed, {3, 5}, Layout::Narrowed},
    {{4, 6}, Layout::Narrowed, {6}, Layout::Contiguous},  // bias add: [m,n] + [n]
    {{4, 6}, Layout::Contiguous, {6}, Layout::Narrowed},
    {{6}, Layout::Contiguous, {4, 6}, Layout::Expanded},
    {{4, 1}, Layout::Contiguous, {1, 6}, Layout::Transposed},  // outer broadcast
    {{2, 3, 4}, Layout::Expanded, {3, 1}, Layout::Contiguous},
    {{}, Layout::Contiguous, {2, 3}, Layout::Transposed},   // 0-d operand
    {{0, 3}, Layout::Contiguous, {3}, Layout::Contiguous},  // empty
    {{5, 0}, Layout::Narrowed, {5, 1}, Layout::Contiguous},
    {{2, 40}, Layout::Contiguous, {2, 40}, Layout::Contiguous},    // long runs: vector code + tail
    {{40, 70}, Layout::Transposed, {40, 70}, Layout::Contiguous},  // tiled, partial tiles
    {{2, 35, 33}, Layout::Transposed, {35, 1}, Layout::Narrowed},
};

struct BinaryOpCase {
  const char* name;
  BinaryFn fn;
  std::function<double(double, double, bool)> ref;  // (a, b, integer dtype)
};

const std::vector<BinaryOpCase> kArithmetic = {
    {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, [](double x, double y, bool) { return x + y; }},
    {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, [](double x, double y, bool) { return x - y; }},
    {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, [](double x, double y, bool) { return x * y; }},
    {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); },
     [](double x, double y, bool integer) { return integer ? std::trunc(x / y) : x / y; }},
    {"maximum", maximum, [](double x, double y, bool) { return std::max(x, y); }},
    {"minimum", minimum, [](double x, double y, bool) { return std::min(x, y); }},
};

const std::vector<BinaryOpCase> kComparisons = {
    {"eq", eq, [](double x, double y, bool) { return double(x == y); }},
    {"ne", ne, [](double x, double y, bool) { return double(x != y); }},
    {"lt", lt, [](double x, double y, bool) { return double(x < y); }},
    {"le", le, [](double x, double y, bool) { return double(x <= y); }},
    {"gt", gt, [](double x, double y, bool) { return double(x > y); }},
    {"ge", ge, [](double x, double y, bool) { return double(x >= y); }},
};

void check_binary_ops(const std::vector<BinaryOpCase>& ops, bool comparison) {
  for (const BinaryOpCase& op : ops) {
    for (DType dt : kAllDTypes) {
      for (const BinaryCase& c : kBinaryCases) {
        INFO(op.name << " " << dtype_name(dt) << " " << shape_str(c.a) << " " << layout_name(c.layout_a) << " with "
                     << shape_str(c.b) << " " << layout_name(c.layout_b));
        const bool is_div = std::string(op.name) == "div";
        const Tensor a = make(c.a, dt, c.layout_a, 11);
        const Tensor b = make(c.b, dt, c.layout_b, 23, is_div ? Values::NonZero : Values::Any);
        const Tensor got = op.fn(a, b);
        CHECK(got.dtype() == (comparison ? DType::U8 : dt));
        CHECK(got.is_contiguous());
        const bool integer = !is_floating(dt);
        const auto want = ref_binary(a, b, [&](double x, double y) {
          return comparison ? op.ref(x, y, integer) : wrap(dt, op.ref(x, y, integer));
        });
        check_close(got, broadcast(c.a, c.b), want, comparison ? Tol{0, 0} : arith_tol(dt));
      }
    }
  }
}

}  // namespace

TEST_CASE("binary arithmetic matches the reference for every dtype, layout and broadcast") {
  check_binary_ops(kArithmetic, /*comparison=*/false);
}

TEST_CASE("comparisons give u8 0/1 matching the reference") { check_binary_ops(kComparisons, /*comparison=*/true); }

TEST_CASE("integer arithmetic wraps and integer division truncates") {
  const Tensor a = from_values({4}, DType::U8, {250, 3, 7, 0});
  const Tensor b = from_values({4}, DType::U8, {10, 5, 2, 1});
  check_close(add(a, b), {4}, {4, 8, 9, 1}, {0, 0});
  check_close(sub(a, b), {4}, {240, 254, 5, 255}, {0, 0});
  const Tensor i = from_values({4}, DType::I32, {-7, 7, -2147483648.0, 9});
  const Tensor j = from_values({4}, DType::I32, {2, -2, -1, 3});
  check_close(div(i, j), {4}, {-3, -3, -2147483648.0, 3}, {0, 0});  // MIN / -1 wraps
  expect_error<ValueError>([&] { div(i, from_values({4}, DType::I32, {1, 0, 1, 1})); }, {"[div]", "zero"});
}

TEST_CASE("maximum, minimum and comparisons treat NaN like torch") {
  const double nan = std::nan("");
  for (DType dt : kFloatDTypes) {
    INFO(dtype_name(dt));
    const Tensor a = from_values({3}, dt, {nan, 1, 2});
    const Tensor b = from_values({3}, dt, {0, nan, 3});
    check_close(maximum(a, b), {3}, {nan, nan, 3}, {0, 0});
    check_close(minimum(a, b), {3}, {nan, nan, 2}, {0, 0});
    check_close(eq(a, a), {3}, {0, 1, 1}, {0, 0});
    check_close(ne(a, b), {3}, {1, 1, 1}, {0, 0});
  }
}

TEST_CASE("scalar add and mul convert the scalar and match the reference") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed}) {
      INFO(dtype_name(dt) << " " << layout_name(layout));
      const Tensor a = make({3, 17}, dt, layout, 5);
      const std::vector<double> va = read(a);
      const bool integer = !is_floating(dt);
      const double s_add = integer ? 3 : 2.5, s_mul = integer ? 2 : -1.5;
      std::vector<double> want_add, want_mul;
      for (double x : va) {
        want_add.push_back(wrap(dt, x + s_add));
        want_mul.push_back(wrap(dt, x * s_mul));
      }
      check_close(add(a, s_add), {3, 17}, want_add, arith_tol(dt));
      check_close(mul(a, s_mul), {3, 17}, want_mul, arith_tol(dt));
    }
  }
  // Integer dtypes truncate the scalar and refuse one they cannot hold.
  check_close(add(from_values({2}, DType::I32, {1, -1}), 2.9), {2}, {3, 1}, {0, 0});
  expect_error<ValueError>([] { add(from_values({1}, DType::I8, {1}), 1000.0); }, {"[add]", "1000", "i8"});
  expect_error<ValueError>([] { mul(from_values({1}, DType::U8, {1}), -1.0); }, {"[mul]", "u8"});
}

TEST_CASE("where and masked_fill select with broadcast masks") {
  const Tensor cond = from_values({4, 1}, DType::U8, {1, 0, 0, 7});
  const Tensor mask = from_values({1, 5}, DType::U8, {1, 0, 1, 0, 0});
  for (DType dt : kAllDTypes) {
    INFO(dtype_name(dt));
    const Tensor a = make({4, 5}, dt, Layout::Transposed, 3);
    const Tensor b = make({5}, dt, Layout::Narrowed, 4);
    const std::vector<double> va = read(a), vb = read(b);
    std::vector<double> want_where, want_fill;
    const double fill = dt == DType::U8 ? 9 : -2;
    const double cond_rows[] = {1, 0, 0, 1}, mask_cols[] = {1, 0, 1, 0, 0};
    for (int64_t i = 0; i < 4; ++i) {
      for (int64_t j = 0; j < 5; ++j) {
        want_where.push_back(cond_rows[i] != 0 ? va[size_t(i * 5 + j)] : vb[size_t(j)]);
        want_fill.push_back(mask_cols[j] != 0 ? fill : va[size_t(i * 5 + j)]);
      }
    }
    check_close(where(cond, a, b), {4, 5}, want_where, {0, 0});
    check_close(masked_fill(a, mask, fill), {4, 5}, want_fill, {0, 0});
  }
  const Tensor a = make({4, 5}, DType::F32, Layout::Contiguous);
  expect_error<DTypeError>([&] { where(a, a, a); }, {"[where]", "cond", "u8", "f32"});
  expect_error<DTypeError>([&] { where(cond, a, a.to(DType::F64)); }, {"[where]", "f32", "f64"});
  expect_error<ShapeError>(
      [&] {
        masked_fill(a, from_values({2, 4, 5}, DType::U8, {}), 0);
      },
      {"[masked_fill]", "[2, 4, 5]", "[4, 5]"});
  expect_error<DTypeError>([&] { masked_fill(a, a, 0); }, {"[masked_fill]", "mask"});
}

TEST_CASE("unary math matches std:: functions on floating dtypes") {
  struct UnaryCase {
    const char* name;
    Tensor (*fn)(const Tensor&);
    double (*ref)(double);
    Values values;
  };
  const std::vector<UnaryCase> cases = {
      {"neg", neg, [](double x) { return -x; }, Values::Any},
      {"abs", abs, [](double x) { return std::abs(x); }, Values::Any},
      {"exp", exp, [](double x) { return std::exp(x); }, Values::Any},
      {"log", log, [](double x) { return std::log(x); }, Values::Positive},
      {"sqrt", sqrt, [](double x) { return std::sqrt(x); }, Values::Positive},
      {"rsqrt", rsqrt, [](double x) { return 1 / std::sqrt(x); }, Values::Positive},
      {"tanh", tanh, [](double x) { return std::tanh(x); }, Values::Any},
      {"relu", relu, [](double x) { return std::max(x, 0.0); }, Values::Any},
      {"silu", silu, [](double x) { return x / (1 + std::exp(-x)); }, Values::Any},
      {"gelu", gelu, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, Values::Any},
  };
  for (const UnaryCase& c : cases) {
    for (DType dt : kFloatDTypes) {
      for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed, Layout::Expanded}) {
        for (const Shape& shape : {Shape{7, 45}, Shape{0, 4}, Shape{}}) {
          INFO(c.name << " " << dtype_name(dt) << " " << layout_name(layout) << " " << shape_str(shape));
          const Tensor a = make(shape, dt, layout, 9, c.values);
          std::vector<double> want;
          for (double x : read(a)) want.push_back(c.ref(x));
          const Tensor got = c.fn(a);
          CHECK(got.dtype() == dt);
          check_close(got, shape, want, math_tol(dt));
        }
      }
    }
  }
}

TEST_CASE("unary ops on integers: neg/abs/relu work, the rest refuse") {
  for (DType dt : kIntDTypes) {
    INFO(dtype_name(dt));
    const Tensor a = make({3, 4}, dt, Layout::Transposed, 2);
    std::vector<double> want_neg, want_abs, want_relu;
    for (double x : read(a)) {
      want_neg.push_back(wrap(dt, -x));
      want_abs.push_back(std::abs(x));
      want_relu.push_back(std::max(x, 0.0));
    }
    check_close(neg(a), {3, 4}, want_neg, {0, 0});
    check_close(abs(a), {3, 4}, want_abs, {0, 0});
    check_close(relu(a), {3, 4}, want_relu, {0, 0});
    expect_error<DTypeError>([&] { exp(a); }, {"[exp]", std::string(dtype_name(dt))});
    expect_error<DTypeError>([&] { gelu(a); }, {"[gelu]"});
  }
}

TEST_CASE("unary edge values: NaN through relu, silu of large negatives, gelu tails") {
  const double nan = std::nan("");
  const Tensor a = from_values({4}, DType::F32, {nan, -1000, 1000, -0.0});
  const std::vector<double> r = read(relu(a));
  CHECK(std::isnan(r[0]));
  CHECK(r[1] == 0);
  const std::vector<double> s = read(silu(a));
  CHECK(s[1] == 0);  // not NaN from inf * 0
  CHECK(s[2] == 1000);
  const std::vector<double> g = read(gelu(a));
  CHECK(g[1] == 0);
  CHECK(g[2] == 1000);
}
