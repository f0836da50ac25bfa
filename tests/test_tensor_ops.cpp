// CPU kernels (tensor/ops.hpp) against independent naive references.
//
// The reference side never calls the code under test: inputs are written element by element,
// read back through their own shape/strides/offset (read()), and every expected value comes
// from plain loops over std::vector<double> in this file. Inputs are multiples of 1/8 (floats)
// or small integers, so they are exact in every dtype and only the op's own rounding is
// tolerated: none for integers and f64 arithmetic, a few ulps of the dtype otherwise.
#include <catch2/catch.hpp>

#include "tensor/ops.hpp"

#include <cmath>
#include <functional>
#include <string>

using namespace dtensor;

namespace {

const std::vector<DType> kFloatDTypes = {DType::F32, DType::F64, DType::BF16, DType::F16};
const std::vector<DType> kIntDTypes = {DType::I32, DType::I64, DType::U8, DType::I8};

// Reference arithmetic on row-major arrays ------------------------------------------------------

int64_t count(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape unravel(int64_t flat, const Shape& shape) {
  Shape index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return index;
}

int64_t ravel(const Shape& index, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + index[d];
  return flat;
}

// Every element of any view, in row-major order of its shape, through its own strides.
std::vector<double> read(const Tensor& t) {
  std::vector<double> out(size_t(count(t.shape())));
  visit_dtype(t.dtype(), [&]<typename T>() {
    const T* base = static_cast<const T*>(t.data_ptr());
    for (int64_t flat = 0; flat < int64_t(out.size()); ++flat) {
      const Shape index = unravel(flat, t.shape());
      int64_t offset = 0;
      for (size_t d = 0; d < index.size(); ++d) offset += index[d] * t.strides()[d];
      out[size_t(flat)] = double(compute_t<T>(base[offset]));
    }
  });
  return out;
}

// Integer results wrap to the dtype's width, as the kernels (and torch) do.
double wrap(DType dt, double v) {
  if (dt == DType::U8) return std::fmod(std::fmod(v, 256.0) + 256.0, 256.0);
  if (dt == DType::I8) return std::fmod(std::fmod(v + 128.0, 256.0) + 256.0, 256.0) - 128.0;
  return v;
}

Shape broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t sa = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t sb = i < b.size() ? b[b.size() - 1 - i] : 1;
    out[out.size() - 1 - i] = sa == 1 ? sb : sa;
  }
  return out;
}

// Flat index into `shape` of the element that broadcasts to `index` of `out_shape`.
int64_t source_of(const Shape& index, const Shape& shape, const Shape& out_shape) {
  Shape src(shape.size());
  const size_t lead = out_shape.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d) src[d] = shape[d] == 1 ? 0 : index[lead + d];
  return ravel(src, shape);
}

std::vector<double> ref_binary(const Tensor& a, const Tensor& b,
                               const std::function<double(double, double)>& f) {
  const std::vector<double> va = read(a), vb = read(b);
  const Shape shape = broadcast(a.shape(), b.shape());
  std::vector<double> out(size_t(count(shape)));
  for (int64_t i = 0; i < count(shape); ++i) {
    const Shape index = unravel(i, shape);
    out[size_t(i)] = f(va[size_t(source_of(index, a.shape(), shape))],
                       vb[size_t(source_of(index, b.shape(), shape))]);
  }
  return out;
}

// Inputs --------------------------------------------------------------------------------------

enum class Values { Any, Positive, NonZero };
enum class Layout { Contiguous, Transposed, Narrowed, Expanded };

// Deterministic values exact in the dtype (small enough that i8/u8 products do not wrap).
double sample(DType dt, Values kind, uint64_t& state) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  const uint64_t r = state >> 33;
  int64_t lo = -48, hi = 48, denom = 8;
  if (dt == DType::I32 || dt == DType::I64) lo = -50, hi = 50, denom = 1;
  if (dt == DType::I8) lo = -11, hi = 11, denom = 1;
  if (dt == DType::U8) lo = 0, hi = 15, denom = 1;
  if (kind == Values::Positive) lo = 1;
  int64_t k = lo + int64_t(r % uint64_t(hi - lo + 1));
  if (kind == Values::NonZero && k == 0) k = 1;
  return double(k) / double(denom);
}

Tensor filled(const Shape& shape, DType dt, uint64_t seed, Values kind) {
  Tensor t = Tensor::empty(shape, dt);
  visit_dtype(dt, [&]<typename T>() {
    T* p = static_cast<T*>(t.data_ptr());
    for (int64_t i = 0; i < count(shape); ++i) p[i] = T(compute_t<T>(sample(dt, kind, seed)));
  });
  return t;
}

Tensor from_values(const Shape& shape, DType dt, const std::vector<double>& values) {
  Tensor t = Tensor::empty(shape, dt);
  visit_dtype(dt, [&]<typename T>() {
    for (size_t i = 0; i < values.size(); ++i) {
      static_cast<T*>(t.data_ptr())[i] = T(compute_t<T>(values[i]));
    }
  });
  return t;
}

// A view of the given shape laid out as asked (falls back to contiguous where a layout needs
// more dims than the shape has).
Tensor make(const Shape& shape, DType dt, Layout layout, uint64_t seed = 1,
            Values kind = Values::Any) {
  if (layout == Layout::Transposed && shape.size() >= 2) {
    Shape base = shape;
    std::swap(base[base.size() - 1], base[base.size() - 2]);
    return filled(base, dt, seed, kind).transpose(-1, -2);
  }
  if (layout == Layout::Narrowed && !shape.empty()) {
    Shape base = shape;
    for (int64_t& s : base) s += 2;
    Tensor t = filled(base, dt, seed, kind);
    for (size_t d = 0; d < shape.size(); ++d) t = t.narrow(int64_t(d), 1, shape[d]);
    return t;
  }
  if (layout == Layout::Expanded && !shape.empty()) {
    Shape base = shape;
    base[0] = 1;
    return filled(base, dt, seed, kind).expand(shape);
  }
  return filled(shape, dt, seed, kind);
}

// Comparison ----------------------------------------------------------------------------------

struct Tol {
  double rel, abs;
};
// Rounding of one op in the dtype (exact inputs, exact or correctly rounded arithmetic).
Tol arith_tol(DType dt) {
  switch (dt) {
    case DType::F32: return {2e-7, 0};
    case DType::BF16: return {4e-3, 0};
    case DType::F16: return {1e-3, 0};
    default: return {0, 0};  // f64 and integers are exact
  }
}
// Transcendental functions: library error plus the rounding on store.
Tol math_tol(DType dt) {
  switch (dt) {
    case DType::F64: return {1e-13, 1e-14};
    case DType::F32: return {1e-5, 1e-6};
    case DType::BF16: return {8e-3, 1e-4};
    case DType::F16: return {2e-3, 1e-5};
    default: return {0, 0};
  }
}

// got ~ want elementwise: |got - want| <= abs + rel * scale (scale = |want| unless given).
void check_close(const Tensor& got, const Shape& want_shape, const std::vector<double>& want,
                 Tol tol, const std::vector<double>& scale = {}) {
  REQUIRE(got.shape() == want_shape);
  const std::vector<double> values = read(got);
  for (size_t i = 0; i < want.size(); ++i) {
    const double s = scale.empty() ? std::abs(want[i]) : scale[i];
    const bool both_nan = std::isnan(values[i]) && std::isnan(want[i]);
    const bool ok = both_nan || values[i] == want[i] ||
                    std::abs(values[i] - want[i]) <= tol.abs + tol.rel * s;
    if (!ok) {
      FAIL_CHECK("element " << i << ": got " << values[i] << ", want " << want[i]);
      return;
    }
  }
  SUCCEED();
}

// fn must throw E whose message contains every fragment (the op name at least).
template <typename E, typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    FAIL_CHECK("no exception thrown");
  } catch (const E& e) {
    const std::string message = e.what();
    for (const std::string& f : fragments) {
      INFO("message: " << message);
      CHECK(message.find(f) != std::string::npos);
    }
  } catch (const std::exception& e) {
    FAIL_CHECK("wrong exception type: " << e.what());
  }
}

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous: return "contiguous";
    case Layout::Transposed: return "transposed";
    case Layout::Narrowed: return "narrowed";
    case Layout::Expanded: return "expanded";
  }
  return "?";
}

}  // namespace

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
    {{}, Layout::Contiguous, {2, 3}, Layout::Transposed},  // 0-d operand
    {{0, 3}, Layout::Contiguous, {3}, Layout::Contiguous},  // empty
    {{5, 0}, Layout::Narrowed, {5, 1}, Layout::Contiguous},
    {{2, 40}, Layout::Contiguous, {2, 40}, Layout::Contiguous},  // long runs: vector code + tail
    {{40, 70}, Layout::Transposed, {40, 70}, Layout::Contiguous},  // tiled, partial tiles
    {{2, 35, 33}, Layout::Transposed, {35, 1}, Layout::Narrowed},
};

struct BinaryOpCase {
  const char* name;
  BinaryFn fn;
  std::function<double(double, double, bool)> ref;  // (a, b, integer dtype)
};

const std::vector<BinaryOpCase> kArithmetic = {
    {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); },
     [](double x, double y, bool) { return x + y; }},
    {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); },
     [](double x, double y, bool) { return x - y; }},
    {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); },
     [](double x, double y, bool) { return x * y; }},
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
        INFO(op.name << " " << dtype_name(dt) << " " << shape_str(c.a) << " "
                     << layout_name(c.layout_a) << " with " << shape_str(c.b) << " "
                     << layout_name(c.layout_b));
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

TEST_CASE("comparisons give u8 0/1 matching the reference") {
  check_binary_ops(kComparisons, /*comparison=*/true);
}

TEST_CASE("integer arithmetic wraps and integer division truncates") {
  const Tensor a = from_values({4}, DType::U8, {250, 3, 7, 0});
  const Tensor b = from_values({4}, DType::U8, {10, 5, 2, 1});
  check_close(add(a, b), {4}, {4, 8, 9, 1}, {0, 0});
  check_close(sub(a, b), {4}, {240, 254, 5, 255}, {0, 0});
  const Tensor i = from_values({4}, DType::I32, {-7, 7, -2147483648.0, 9});
  const Tensor j = from_values({4}, DType::I32, {2, -2, -1, 3});
  check_close(div(i, j), {4}, {-3, -3, -2147483648.0, 3}, {0, 0});  // MIN / -1 wraps
  expect_error<ValueError>([&] { div(i, from_values({4}, DType::I32, {1, 0, 1, 1})); },
                           {"[div]", "zero"});
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
  expect_error<ValueError>([] { add(from_values({1}, DType::I8, {1}), 1000.0); },
                           {"[add]", "1000", "i8"});
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
  expect_error<ShapeError>([&] { masked_fill(a, from_values({2, 4, 5}, DType::U8, {}), 0); },
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
      {"gelu", gelu,
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, Values::Any},
  };
  for (const UnaryCase& c : cases) {
    for (DType dt : kFloatDTypes) {
      for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed,
                            Layout::Expanded}) {
        for (const Shape& shape : {Shape{7, 45}, Shape{0, 4}, Shape{}}) {
          INFO(c.name << " " << dtype_name(dt) << " " << layout_name(layout) << " "
                      << shape_str(shape));
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

// Matrix products -------------------------------------------------------------------------------

namespace {

// Naive batched product on read() values: a [B..., m, k] x b [B..., k, n] with equal batch
// (or b 2-D, shared). Also returns sum |a||b| per element, the scale of rounding error.
std::pair<std::vector<double>, std::vector<double>> ref_matmul(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = read(a), vb = read(b);
  const int64_t m = a.shape()[a.shape().size() - 2], k = a.shape().back(), n = b.shape().back();
  const int64_t batches = count(Shape(a.shape().begin(), a.shape().end() - 2));
  const bool shared_b = b.dim() == 2;
  std::vector<double> out, scale;
  for (int64_t p = 0; p < batches; ++p) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, magnitude = 0;
        for (int64_t q = 0; q < k; ++q) {
          const double x = va[size_t((p * m + i) * k + q)];
          const double y = vb[size_t(((shared_b ? 0 : p) * k + q) * n + j)];
          sum += x * y;
          magnitude += std::abs(x * y);
        }
        out.push_back(sum);
        scale.push_back(magnitude);
      }
    }
  }
  return {out, scale};
}

Tol matmul_tol(DType dt) {
  switch (dt) {
    case DType::F64: return {1e-14, 0};
    case DType::F32: return {1e-6, 0};
    case DType::BF16: return {8e-3, 0};
    default: return {2e-3, 0};
  }
}

}  // namespace

TEST_CASE("matmul 2-D matches the naive product for every layout, including empty dims") {
  const std::vector<std::array<int64_t, 3>> sizes = {
      {5, 7, 3}, {1, 4, 6}, {6, 1, 2}, {3, 0, 4}, {0, 3, 2}, {33, 70, 19}};
  const Layout layouts[] = {Layout::Contiguous, Layout::Transposed, Layout::Narrowed};
  for (DType dt : kFloatDTypes) {
    for (const auto& [m, k, n] : sizes) {
      for (Layout la : layouts) {
        for (Layout lb : layouts) {
          INFO(dtype_name(dt) << " m=" << m << " k=" << k << " n=" << n << " a "
                              << layout_name(la) << " b " << layout_name(lb));
          const Tensor a = make({m, k}, dt, la, 1), b = make({k, n}, dt, lb, 2);
          const auto [want, scale] = ref_matmul(a, b);
          const Tensor got = matmul(a, b);
          CHECK(got.dtype() == dt);
          check_close(got, {m, n}, want, matmul_tol(dt), scale);
        }
      }
    }
  }
}

TEST_CASE("batched matmul and bmm: per-batch, folded and strided batches") {
  for (DType dt : kFloatDTypes) {
    INFO(dtype_name(dt));
    // [b,m,k] x [b,k,n], with a transposed inner layout and a permuted batch layout.
    const Tensor a = make({3, 4, 5}, dt, Layout::Transposed, 1);
    const Tensor b = make({3, 5, 2}, dt, Layout::Narrowed, 2);
    auto [want, scale] = ref_matmul(a, b);
    check_close(matmul(a, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    check_close(bmm(a, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    const Tensor permuted = filled({4, 3, 5}, dt, 3, Values::Any).permute({1, 0, 2});
    std::tie(want, scale) = ref_matmul(permuted, b);
    check_close(matmul(permuted, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    // [b,m,k] x [k,n]: contiguous a folds into one GEMM; the permuted one cannot.
    const Tensor w = make({5, 6}, dt, Layout::Transposed, 4);
    for (const Tensor& x : {make({3, 4, 5}, dt, Layout::Contiguous, 5), permuted}) {
      std::tie(want, scale) = ref_matmul(x, w);
      check_close(matmul(x, w), {3, 4, 6}, want, matmul_tol(dt), scale);
    }
    check_close(matmul(make({2, 0, 5}, dt, Layout::Contiguous), w), {2, 0, 6}, {}, {0, 0});
    // Broadcast batch dims: a 2-D a against every matrix of b, and an expanded batch.
    const Tensor shared = make({4, 5}, dt, Layout::Transposed, 6);
    want.clear();
    scale.clear();
    for (int64_t p = 0; p < 3; ++p) {
      const auto [w_p, s_p] = ref_matmul(shared, b.select(0, p));
      want.insert(want.end(), w_p.begin(), w_p.end());
      scale.insert(scale.end(), s_p.begin(), s_p.end());
    }
    check_close(matmul(shared, b), {3, 4, 2}, want, matmul_tol(dt), scale);
    check_close(matmul(shared.unsqueeze(0).expand({3, 4, 5}), b), {3, 4, 2}, want,
                matmul_tol(dt), scale);
  }
}

TEST_CASE("linear computes x @ W^T + b on strided weights and biases") {
  for (DType dt : kFloatDTypes) {
    for (Layout lx : {Layout::Contiguous, Layout::Narrowed, Layout::Transposed}) {
      for (Layout lw : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed}) {
        INFO(dtype_name(dt) << " x " << layout_name(lx) << " weight " << layout_name(lw));
        const Tensor x = make({2, 3, 4}, dt, lx, 1);
        const Tensor weight = make({5, 4}, dt, lw, 2);
        const Tensor bias = make({5}, dt, Layout::Narrowed, 3);
        const std::vector<double> vx = read(x), vw = read(weight), vb = read(bias);
        std::vector<double> want, want_bias, scale;
        for (int64_t r = 0; r < 6; ++r) {
          for (int64_t o = 0; o < 5; ++o) {
            double sum = 0, magnitude = std::abs(vb[size_t(o)]);
            for (int64_t i = 0; i < 4; ++i) {
              sum += vx[size_t(r * 4 + i)] * vw[size_t(o * 4 + i)];
              magnitude += std::abs(vx[size_t(r * 4 + i)] * vw[size_t(o * 4 + i)]);
            }
            want.push_back(sum);
            want_bias.push_back(sum + vb[size_t(o)]);
            scale.push_back(magnitude);
          }
        }
        check_close(linear(x, weight), {2, 3, 5}, want, matmul_tol(dt), scale);
        check_close(linear(x, weight, bias), {2, 3, 5}, want_bias, matmul_tol(dt), scale);
        const std::vector<double> first(want_bias.begin(), want_bias.begin() + 5);
        check_close(linear(x.select(0, 0).select(0, 0), weight, bias), {5}, first,
                    matmul_tol(dt), std::vector<double>(scale.begin(), scale.begin() + 5));
      }
    }
  }
}

TEST_CASE("matrix products reject bad shapes and dtypes") {
  const Tensor a = make({2, 3}, DType::F32, Layout::Contiguous);
  const Tensor b = make({4, 5}, DType::F32, Layout::Contiguous);
  expect_error<ShapeError>([&] { matmul(a, b); }, {"[matmul]", "[2, 3]", "[4, 5]"});
  expect_error<ShapeError>([&] { matmul(a, make({3}, DType::F32, Layout::Contiguous)); },
                           {"[matmul]", "[3]"});
  expect_error<DTypeError>([&] { matmul(a, b.to(DType::F64)); }, {"[matmul]", "f32", "f64"});
  const Tensor i = make({2, 2}, DType::I32, Layout::Contiguous);
  expect_error<DTypeError>([&] { matmul(i, i); }, {"[matmul]", "i32"});
  expect_error<ShapeError>([&] { bmm(a, a.transpose(0, 1)); }, {"[bmm]", "3-D"});
  expect_error<ShapeError>(
      [&] { bmm(make({2, 2, 3}, DType::F32, Layout::Contiguous),
                make({3, 3, 2}, DType::F32, Layout::Contiguous)); },
      {"[bmm]", "[2, 2, 3]", "[3, 3, 2]"});
  expect_error<ShapeError>([&] { linear(a, b); }, {"[linear]", "[2, 3]"});
  expect_error<ShapeError>(
      [&] { linear(a, b.narrow(1, 0, 3), make({5}, DType::F32, Layout::Contiguous)); },
      {"[linear]", "bias", "[4]", "[5]"});
}

// Reductions and softmax ----------------------------------------------------------------------

namespace {

// Folds the masked dims of read(a) with f from init; also returns sum |x| per output.
struct Reduced {
  Shape shape;  // with keepdim
  std::vector<double> values, magnitude;
  std::vector<int64_t> counts;
};
Reduced ref_reduce(const Tensor& a, const std::vector<bool>& mask, double init,
                   const std::function<double(double, double)>& f) {
  Reduced r;
  for (size_t d = 0; d < mask.size(); ++d) r.shape.push_back(mask[d] ? 1 : a.shape()[d]);
  const size_t n = size_t(count(r.shape));
  r.values.assign(n, init);
  r.magnitude.assign(n, 0);
  r.counts.assign(n, 0);
  const std::vector<double> va = read(a);
  for (int64_t i = 0; i < count(a.shape()); ++i) {
    Shape index = unravel(i, a.shape());
    for (size_t d = 0; d < mask.size(); ++d) index[d] = mask[d] ? 0 : index[d];
    const size_t o = size_t(ravel(index, r.shape));
    r.values[o] = f(r.values[o], va[size_t(i)]);
    r.magnitude[o] += std::abs(va[size_t(i)]);
    r.counts[o] += 1;
  }
  return r;
}

Shape drop_reduced(const Shape& kept, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < kept.size(); ++d) {
    if (!mask[d] || keepdim) out.push_back(kept[d]);
  }
  return out;
}

std::vector<bool> mask_of(const std::vector<int64_t>& dims, size_t ndim) {
  std::vector<bool> mask(ndim, dims.empty());
  for (int64_t d : dims) mask[size_t(d < 0 ? d + int64_t(ndim) : d)] = true;
  return mask;
}

const std::vector<std::vector<int64_t>> kDimSets = {{}, {0}, {1}, {2}, {-1}, {0, 2}, {2, 1},
                                                    {0, 1, 2}};
const Layout kAllLayouts[] = {Layout::Contiguous, Layout::Transposed, Layout::Narrowed,
                              Layout::Expanded};

}  // namespace

TEST_CASE("sum, mean, amax, amin over dim subsets match the reference") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : kAllLayouts) {
      const Tensor a = make({3, 4, 5}, dt, layout, 7);
      for (const auto& dims : kDimSets) {
        for (bool keepdim : {false, true}) {
          INFO(dtype_name(dt) << " " << layout_name(layout) << " dims " << shape_str(dims)
                              << " keepdim " << keepdim);
          const std::vector<bool> mask = mask_of(dims, 3);
          const Reduced s = ref_reduce(a, mask, 0, [](double x, double y) { return x + y; });
          const Shape shape = drop_reduced(s.shape, mask, keepdim);
          std::vector<double> wrapped;
          for (double v : s.values) wrapped.push_back(wrap(dt, v));
          const Tol sum_tol = {arith_tol(dt).rel * 2, 0};  // rounding of partial sums too
          check_close(sum(a, dims, keepdim), shape, wrapped, sum_tol, s.magnitude);
          const Reduced mx = ref_reduce(a, mask, -1e300, [](double x, double y) {
            return std::max(x, y);
          });
          const Reduced mn = ref_reduce(a, mask, 1e300, [](double x, double y) {
            return std::min(x, y);
          });
          check_close(amax(a, dims, keepdim), shape, mx.values, {0, 0});
          check_close(amin(a, dims, keepdim), shape, mn.values, {0, 0});
          if (is_floating(dt)) {
            std::vector<double> means, mean_scale;
            for (size_t i = 0; i < s.values.size(); ++i) {
              means.push_back(s.values[i] / double(s.counts[i]));
              mean_scale.push_back(s.magnitude[i] / double(s.counts[i]));
            }
            check_close(mean(a, dims, keepdim), shape, means, sum_tol, mean_scale);
          } else {
            expect_error<DTypeError>([&] { mean(a, dims, keepdim); }, {"[mean]"});
          }
        }
      }
    }
  }
}

TEST_CASE("f32 sum of many elements stays accurate") {
  const int64_t n = 1 << 20;
  Tensor a = Tensor::empty({n}, DType::F32);
  for (int64_t i = 0; i < n; ++i) a.data<float>()[i] = 0.1f;
  const double want = double(0.1f) * double(n);
  CHECK(std::abs(read(sum(a))[0] - want) < 1e-4 * want);
}

TEST_CASE("reductions of empty tensors and bad dims") {
  const Tensor e = make({0, 3}, DType::F32, Layout::Contiguous);
  check_close(sum(e, {0}), {3}, {0, 0, 0}, {0, 0});
  check_close(sum(e, {1}), {0}, {}, {0, 0});
  check_close(sum(e), {}, {0}, {0, 0});
  const std::vector<double> m = read(mean(e, {0}));
  CHECK((m.size() == 3 && std::isnan(m[0])));
  check_close(amax(e, {1}), {0}, {}, {0, 0});
  expect_error<ShapeError>([&] { amax(e, {0}); }, {"[amax]", "size 0"});
  expect_error<ShapeError>([&] { amin(e); }, {"[amin]"});
  expect_error<ShapeError>([&] { argmax(e, 0); }, {"[argmax]"});
  const Tensor a = make({2, 3}, DType::F32, Layout::Contiguous);
  expect_error<ShapeError>([&] { sum(a, {2}); }, {"[sum]", "2"});
  expect_error<ShapeError>([&] { sum(a, {-3}); }, {"[sum]", "-3"});
  expect_error<ShapeError>([&] { sum(a, {1, -1}); }, {"[sum]", "more than once"});
  expect_error<ShapeError>([&] { softmax(a, 5); }, {"[softmax]", "5"});
  // A 0-d tensor reduces to itself.
  check_close(sum(from_values({}, DType::I64, {7}), {0}), {}, {7}, {0, 0});
}

TEST_CASE("reductions propagate NaN") {
  const double nan = std::nan("");
  for (DType dt : kFloatDTypes) {
    INFO(dtype_name(dt));
    // NaN first in one column and second in another: both fold orders must keep it.
    const Tensor a = from_values({2, 3}, dt, {1, nan, 3, 4, 5, nan});
    check_close(amax(a, {1}), {2}, {nan, nan}, {0, 0});
    check_close(amax(a, {0}), {3}, {4, nan, nan}, {0, 0});
    check_close(amin(a, {0}), {3}, {1, nan, nan}, {0, 0});
    check_close(amin(a.transpose(0, 1), {1}), {3}, {1, nan, nan}, {0, 0});
    check_close(argmax(a, 1), {2}, {1, 2}, {0, 0});
    check_close(sum(a, {0}), {3}, {5, nan, nan}, {0, 0});
  }
}

TEST_CASE("argmax returns the first maximum as i64") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : kAllLayouts) {
      const Tensor a = make({3, 4, 5}, dt, layout, 13);
      const std::vector<double> va = read(a);
      for (int64_t dim : {0, 1, 2, -1}) {
        for (bool keepdim : {false, true}) {
          INFO(dtype_name(dt) << " " << layout_name(layout) << " dim " << dim);
          const size_t d = size_t(dim < 0 ? dim + 3 : dim);
          std::vector<bool> mask(3, false);
          mask[d] = true;
          Shape kept = a.shape();
          kept[d] = 1;
          std::vector<double> want(size_t(count(kept)), -1), best(size_t(count(kept)), -1e300);
          for (int64_t i = 0; i < count(a.shape()); ++i) {  // row-major visits lower indices first
            Shape index = unravel(i, a.shape());
            const int64_t along = index[d];
            index[d] = 0;
            const size_t o = size_t(ravel(index, kept));
            if (va[size_t(i)] > best[o]) best[o] = va[size_t(i)], want[o] = double(along);
          }
          const Tensor got = argmax(a, dim, keepdim);
          CHECK(got.dtype() == DType::I64);
          check_close(got, drop_reduced(kept, mask, keepdim), want, {0, 0});
        }
      }
    }
  }
}

TEST_CASE("softmax and log_softmax match the reference along every dim") {
  for (DType dt : kFloatDTypes) {
    for (Layout layout : kAllLayouts) {
      const Tensor a = make({3, 4, 5}, dt, layout, 17);
      const std::vector<double> va = read(a);
      for (int64_t dim : {0, 1, 2, -1}) {
        INFO(dtype_name(dt) << " " << layout_name(layout) << " dim " << dim);
        const size_t d = size_t(dim < 0 ? dim + 3 : dim);
        std::vector<double> want(va.size()), want_log(va.size());
        for (int64_t i = 0; i < count(a.shape()); ++i) {
          Shape index = unravel(i, a.shape());
          double denom = 0;
          for (int64_t j = 0; j < a.shape()[d]; ++j) {
            index[d] = j;
            denom += std::exp(va[size_t(ravel(index, a.shape()))]);
          }
          want[size_t(i)] = std::exp(va[size_t(i)]) / denom;
          want_log[size_t(i)] = va[size_t(i)] - std::log(denom);
        }
        check_close(softmax(a, dim), a.shape(), want, math_tol(dt));
        check_close(log_softmax(a, dim), a.shape(), want_log, math_tol(dt));
      }
    }
  }
}

TEST_CASE("softmax is stable for large inputs and refuses integers") {
  const Tensor a = from_values({3}, DType::F32, {1000, 1001, 1002});
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
  check_close(softmax(a, 0), {3}, {std::exp(-2.0) / z, std::exp(-1.0) / z, 1 / z}, {1e-6, 0});
  check_close(log_softmax(a, 0), {3}, {-2 - std::log(z), -1 - std::log(z), -std::log(z)},
              {1e-6, 0});
  check_close(softmax(make({2, 0}, DType::F32, Layout::Contiguous), 1), {2, 0}, {}, {0, 0});
  expect_error<DTypeError>([] { softmax(from_values({2}, DType::I64, {1, 2}), 0); },
                           {"[softmax]", "i64"});
}

// Joining, splitting, gathers -------------------------------------------------------------------

TEST_CASE("cat joins strided and empty pieces along any dim") {
  for (DType dt : kAllDTypes) {
    INFO(dtype_name(dt));
    const std::vector<Tensor> rows = {make({2, 3}, dt, Layout::Contiguous, 1),
                                      make({4, 3}, dt, Layout::Transposed, 2),
                                      make({0, 3}, dt, Layout::Contiguous, 3),
                                      make({1, 3}, dt, Layout::Narrowed, 4)};
    std::vector<double> want;
    for (const Tensor& t : rows) {
      for (double v : read(t)) want.push_back(v);
    }
    check_close(cat(rows, 0), {7, 3}, want, {0, 0});
    check_close(cat(rows, -2), {7, 3}, want, {0, 0});

    const std::vector<Tensor> cols = {make({2, 3}, dt, Layout::Narrowed, 5),
                                      make({2, 0}, dt, Layout::Contiguous, 6),
                                      make({2, 2}, dt, Layout::Expanded, 7)};
    const std::vector<double> c0 = read(cols[0]), c2 = read(cols[2]);
    want = {c0[0], c0[1], c0[2], c2[0], c2[1], c0[3], c0[4], c0[5], c2[2], c2[3]};
    check_close(cat(cols, 1), {2, 5}, want, {0, 0});
    // torch's legacy rule: a 1-D [0] tensor is skipped whatever the others' rank.
    check_close(cat({make({0}, dt, Layout::Contiguous), cols[0]}, 1), {2, 3}, c0, {0, 0});
    check_close(cat({make({0, 4}, dt, Layout::Contiguous)}, 0), {0, 4}, {}, {0, 0});
  }
  const Tensor a = make({2, 3}, DType::F32, Layout::Contiguous);
  expect_error<DTypeError>([&] { cat({a, a.to(DType::BF16)}, 0); }, {"[cat]", "f32", "bf16"});
  expect_error<ShapeError>([&] { cat({a, make({2, 4}, DType::F32, Layout::Contiguous)}, 0); },
                           {"[cat]", "[2, 4]", "dim 1"});
  expect_error<ShapeError>([&] { cat({a, a.unsqueeze(0)}, 0); }, {"[cat]", "dims"});
  expect_error<ShapeError>([&] { cat({a, a}, 2); }, {"[cat]", "2"});
  expect_error<ValueError>([&] { cat({}, 0); }, {"[cat]", "non-empty"});
}

TEST_CASE("chunk follows torch.chunk and returns views") {
  const Tensor a = make({3, 6}, DType::I64, Layout::Contiguous);
  const std::vector<double> va = read(a);
  struct Case {
    int64_t n, chunks;
    std::vector<int64_t> sizes;
  };
  for (const Case& c : std::vector<Case>{{5, 4, {2, 2, 1}}, {6, 4, {2, 2, 2}}, {4, 4, {1, 1, 1, 1}},
                                          {5, 1, {5}}, {3, 5, {1, 1, 1}}, {0, 3, {0, 0, 0}}}) {
    INFO("n=" << c.n << " chunks=" << c.chunks);
    const Tensor t = a.narrow(1, 0, c.n);
    const std::vector<Tensor> pieces = chunk(t, c.chunks, 1);
    REQUIRE(pieces.size() == c.sizes.size());
    int64_t start = 0;
    for (size_t p = 0; p < pieces.size(); ++p) {
      CHECK(pieces[p].shape() == Shape{3, c.sizes[p]});
      CHECK(pieces[p].shares_storage(a));
      std::vector<double> want;
      for (int64_t r = 0; r < 3; ++r) {
        for (int64_t j = 0; j < c.sizes[p]; ++j) want.push_back(va[size_t(r * 6 + start + j)]);
      }
      check_close(pieces[p], {3, c.sizes[p]}, want, {0, 0});
      start += c.sizes[p];
    }
  }
  expect_error<ValueError>([&] { chunk(a, 0, 0); }, {"[chunk]", "0"});
  expect_error<ShapeError>([&] { chunk(a, 2, 2); }, {"[chunk]", "2"});
}

TEST_CASE("split by sizes returns views and checks the sizes") {
  const Tensor a = make({2, 4}, DType::F32, Layout::Transposed);
  const std::vector<double> va = read(a);
  const std::vector<Tensor> pieces = split(a, {1, 0, 3}, -1);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[0].shares_storage(a));
  check_close(pieces[0], {2, 1}, {va[0], va[4]}, {0, 0});
  check_close(pieces[1], {2, 0}, {}, {0, 0});
  check_close(pieces[2], {2, 3}, {va[1], va[2], va[3], va[5], va[6], va[7]}, {0, 0});
  expect_error<ShapeError>([&] { split(a, {1, 2}, 1); }, {"[split]", "sum 3", "4"});
  expect_error<ValueError>([&] { split(a, {5, -1}, 1); }, {"[split]", "-1"});
}

TEST_CASE("index_select gathers along any dim with i32 and i64 indices") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed}) {
      INFO(dtype_name(dt) << " " << layout_name(layout));
      const Tensor a = make({4, 5}, dt, layout, 8);
      const std::vector<double> va = read(a);
      const Tensor rows = from_values({3}, DType::I32, {3, 0, 3});
      check_close(index_select(a, 0, rows), {3, 5},
                  [&] {
                    std::vector<double> w;
                    for (int64_t r : {3, 0, 3}) {
                      for (int64_t j = 0; j < 5; ++j) w.push_back(va[size_t(r * 5 + j)]);
                    }
                    return w;
                  }(),
                  {0, 0});
      const Tensor cols = from_values({4}, DType::I64, {0, 2, 4, 0, 2, 4, 0, 2}).slice(0, 0, 4);
      std::vector<double> want;
      for (int64_t r = 0; r < 4; ++r) {
        for (int64_t c : {0, 2, 4, 0}) want.push_back(va[size_t(r * 5 + c)]);
      }
      check_close(index_select(a, -1, cols), {4, 4}, want, {0, 0});
      check_close(index_select(a, 1, from_values({0}, DType::I64, {})), {4, 0}, {}, {0, 0});
    }
  }
  const Tensor a = make({4, 5}, DType::F32, Layout::Contiguous);
  expect_error<ValueError>([&] { index_select(a, 0, from_values({2}, DType::I64, {1, 4})); },
                           {"[index_select]", "index 4", "[0, 4)"});
  expect_error<ValueError>([&] { index_select(a, 1, from_values({1}, DType::I32, {-1})); },
                           {"[index_select]", "-1"});
  expect_error<DTypeError>([&] { index_select(a, 0, from_values({1}, DType::F32, {1})); },
                           {"[index_select]", "f32"});
  expect_error<ShapeError>([&] { index_select(a, 2, from_values({1}, DType::I64, {0})); },
                           {"[index_select]", "2"});
}

TEST_CASE("embedding looks up rows for ids of any shape") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : {Layout::Contiguous, Layout::Narrowed}) {
      INFO(dtype_name(dt) << " " << layout_name(layout));
      const Tensor weight = make({6, 3}, dt, layout, 9);
      const std::vector<double> vw = read(weight);
      const std::vector<double> ids = {5, 0, 2, 5};
      std::vector<double> want;
      for (double id : ids) {
        for (int64_t j = 0; j < 3; ++j) want.push_back(vw[size_t(int64_t(id) * 3 + j)]);
      }
      check_close(embedding(weight, from_values({2, 2}, DType::I64, ids)), {2, 2, 3}, want,
                  {0, 0});
      check_close(embedding(weight, from_values({2, 2}, DType::I32, ids).transpose(0, 1)),
                  {2, 2, 3},
                  {want[0], want[1], want[2], want[6], want[7], want[8], want[3], want[4],
                   want[5], want[9], want[10], want[11]},
                  {0, 0});
    }
  }
  const Tensor weight = make({6, 3}, DType::F32, Layout::Contiguous);
  expect_error<ValueError>([&] { embedding(weight, from_values({2}, DType::I64, {1, 6})); },
                           {"[embedding]", "index 6", "[0, 6)"});
  const Tensor id = from_values({1}, DType::I64, {0});
  expect_error<ShapeError>([&] { embedding(weight.select(1, 0), id); }, {"[embedding]", "2-D"});
}

// Whole-tensor comparisons and devices -----------------------------------------------------------

TEST_CASE("allclose, equal and max_abs_diff") {
  const double inf = INFINITY, nan = std::nan("");
  const Tensor a = from_values({3}, DType::F32, {1, 2, inf});
  CHECK(allclose(a, from_values({3}, DType::F64, {1, 2, inf})));
  CHECK_FALSE(allclose(a, from_values({3}, DType::F32, {1, 2.001, inf})));
  CHECK(allclose(a, from_values({3}, DType::F32, {1, 2.001, inf}), 1e-5, 1e-2));
  CHECK(allclose(a, from_values({3}, DType::F32, {1, 2.001, inf}), 1e-3, 0));
  CHECK_FALSE(allclose(a, from_values({3}, DType::F32, {1, 2, -inf})));
  CHECK_FALSE(allclose(a, from_values({3}, DType::F32, {1, 2, nan})));
  CHECK_FALSE(allclose(a, from_values({1, 3}, DType::F32, {1, 2, inf})));
  CHECK(allclose(make({0, 2}, DType::I8, Layout::Contiguous), make({0, 2}, DType::F16,
                                                                     Layout::Contiguous)));

  const Tensor t = make({3, 4}, DType::BF16, Layout::Transposed, 4);
  CHECK(equal(t, from_values({3, 4}, DType::BF16, read(t))));
  CHECK_FALSE(equal(t, from_values({3, 4}, DType::F32, read(t))));
  std::vector<double> changed = read(t);
  changed[7] += 1;
  CHECK_FALSE(equal(t, from_values({3, 4}, DType::BF16, changed)));
  CHECK_FALSE(equal(t, from_values({4, 3}, DType::BF16, read(t))));
  CHECK_FALSE(equal(from_values({1}, DType::F32, {nan}), from_values({1}, DType::F32, {nan})));
  const Tensor big = from_values({1}, DType::I64, {0});
  big.data<int64_t>()[0] = (int64_t(1) << 60) + 1;
  const Tensor big2 = from_values({1}, DType::I64, {0});
  big2.data<int64_t>()[0] = int64_t(1) << 60;
  CHECK_FALSE(equal(big, big2));  // differs below double precision

  CHECK(max_abs_diff(from_values({3}, DType::F32, {1, 2, 3}),
                     from_values({3}, DType::I32, {1, 4, 2})) == 2.0);
  CHECK(max_abs_diff(a, a) == 0.0);
  CHECK(std::isnan(max_abs_diff(a, from_values({3}, DType::F32, {1, nan, 3}))));
  expect_error<ShapeError>([&] { max_abs_diff(a, t); }, {"[max_abs_diff]", "[3]", "[3, 4]"});
}

TEST_CASE("kernels refuse tensors that are not on the cpu") {
  float storage[4] = {};
  const Tensor g = Tensor::from_blob(storage, {2, 2}, DType::F32, {}, Device::cuda(0));
  const Tensor c = make({2, 2}, DType::F32, Layout::Contiguous);
  expect_error<DeviceError>([&] { add(c, g); }, {"[add]", "'b'", "cuda:0"});
  expect_error<DeviceError>([&] { exp(g); }, {"[exp]", "cuda:0"});
  expect_error<DeviceError>([&] { matmul(g, c); }, {"[matmul]", "cuda:0"});
  expect_error<DeviceError>([&] { linear(c, g); }, {"[linear]", "weight"});
  expect_error<DeviceError>([&] { sum(g); }, {"[sum]"});
  expect_error<DeviceError>([&] { softmax(g, 0); }, {"[softmax]"});
  expect_error<DeviceError>([&] { cat({c, g}, 0); }, {"[cat]"});
  expect_error<DeviceError>([&] { embedding(g, from_values({1}, DType::I64, {0})); },
                            {"[embedding]"});
  expect_error<DeviceError>([&] { allclose(c, g); }, {"[allclose]"});
  // chunk and split only make views: valid on any device.
  CHECK(chunk(g, 2, 0).size() == 2);
}

TEST_CASE("binary ops refuse mismatched dtypes and shapes, naming both") {
  const Tensor a = make({2, 3}, DType::F32, Layout::Contiguous);
  const Tensor b = make({4}, DType::F32, Layout::Contiguous);
  expect_error<ShapeError>([&] { add(a, b); }, {"[add]", "[2, 3]", "[4]"});
  expect_error<ShapeError>([&] { lt(a, b); }, {"[lt]", "[2, 3]", "[4]"});
  expect_error<DTypeError>([&] { mul(a, a.to(DType::I32)); }, {"[mul]", "f32", "i32"});
  expect_error<DTypeError>([&] { eq(a.to(DType::F16), a); }, {"[eq]", "f16", "f32"});
  expect_error<ValueError>([&] { add(Tensor(), a); }, {"[add]", "undefined"});
}
