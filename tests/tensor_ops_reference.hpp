// Shared reference helpers for the tests of the CPU kernels (tensor/ops.hpp) against
// independent naive references: test_tensor_{elementwise,linalg,reduce,shape_ops,checks}.cpp.
//
// The reference side never calls the code under test: inputs are written element by element,
// read back through their own shape/strides/offset (read()), and every expected value comes
// from plain loops over std::vector<double> here and in the test files. Inputs are multiples
// of 1/8 (floats) or small integers, so they are exact in every dtype and only the op's own
// rounding is tolerated: none for integers and f64 arithmetic, a few ulps of the dtype
// otherwise.
#pragma once

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

inline int64_t count(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

inline Shape unravel(int64_t flat, const Shape& shape) {
  Shape index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return index;
}

inline int64_t ravel(const Shape& index, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + index[d];
  return flat;
}

// Every element of any view, in row-major order of its shape, through its own strides.
inline std::vector<double> read(const Tensor& t) {
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
inline double wrap(DType dt, double v) {
  if (dt == DType::U8) return std::fmod(std::fmod(v, 256.0) + 256.0, 256.0);
  if (dt == DType::I8) return std::fmod(std::fmod(v + 128.0, 256.0) + 256.0, 256.0) - 128.0;
  return v;
}

inline Shape broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t sa = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t sb = i < b.size() ? b[b.size() - 1 - i] : 1;
    out[out.size() - 1 - i] = sa == 1 ? sb : sa;
  }
  return out;
}

// Flat index into `shape` of the element that broadcasts to `index` of `out_shape`.
inline int64_t source_of(const Shape& index, const Shape& shape, const Shape& out_shape) {
  Shape src(shape.size());
  const size_t lead = out_shape.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d) src[d] = shape[d] == 1 ? 0 : index[lead + d];
  return ravel(src, shape);
}

inline std::vector<double> ref_binary(const Tensor& a, const Tensor& b,
                                      const std::function<double(double, double)>& f) {
  const std::vector<double> va = read(a), vb = read(b);
  const Shape shape = broadcast(a.shape(), b.shape());
  std::vector<double> out(size_t(count(shape)));
  for (int64_t i = 0; i < count(shape); ++i) {
    const Shape index = unravel(i, shape);
    out[size_t(i)] = f(va[size_t(source_of(index, a.shape(), shape))], vb[size_t(source_of(index, b.shape(), shape))]);
  }
  return out;
}

// Inputs --------------------------------------------------------------------------------------

enum class Values { Any, Positive, NonZero };
enum class Layout { Contiguous, Transposed, Narrowed, Expanded };

// Deterministic values exact in the dtype (small enough that i8/u8 products do not wrap).
inline double sample(DType dt, Values kind, uint64_t& state) {
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

inline Tensor filled(const Shape& shape, DType dt, uint64_t seed, Values kind) {
  Tensor t = Tensor::empty(shape, dt);
  visit_dtype(dt, [&]<typename T>() {
    T* p = static_cast<T*>(t.data_ptr());
    for (int64_t i = 0; i < count(shape); ++i) p[i] = T(compute_t<T>(sample(dt, kind, seed)));
  });
  return t;
}

// A tensor of the given values, one per element, or none where the contents do not matter.
inline Tensor from_values(const Shape& shape, DType dt, const std::vector<double>& values) {
  REQUIRE((values.empty() || values.size() == size_t(count(shape))));
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
inline Tensor make(const Shape& shape, DType dt, Layout layout, uint64_t seed = 1, Values kind = Values::Any) {
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
inline Tol arith_tol(DType dt) {
  switch (dt) {
    case DType::F32:
      return {2e-7, 0};
    case DType::BF16:
      return {4e-3, 0};
    case DType::F16:
      return {1e-3, 0};
    default:
      return {0, 0};  // f64 and integers are exact
  }
}
// Transcendental functions: library error plus the rounding on store.
inline Tol math_tol(DType dt) {
  switch (dt) {
    case DType::F64:
      return {1e-13, 1e-14};
    case DType::F32:
      return {1e-5, 1e-6};
    case DType::BF16:
      return {8e-3, 1e-4};
    case DType::F16:
      return {2e-3, 1e-5};
    default:
      return {0, 0};
  }
}

// got ~ want elementwise: |got - want| <= abs + rel * scale (scale = |want| unless given).
inline void check_close(const Tensor& got, const Shape& want_shape, const std::vector<double>& want, Tol tol,
                        const std::vector<double>& scale = {}) {
  REQUIRE(got.shape() == want_shape);
  const std::vector<double> values = read(got);
  for (size_t i = 0; i < want.size(); ++i) {
    const double s = scale.empty() ? std::abs(want[i]) : scale[i];
    const bool both_nan = std::isnan(values[i]) && std::isnan(want[i]);
    const bool ok = both_nan || values[i] == want[i] || std::abs(values[i] - want[i]) <= tol.abs + tol.rel * s;
    if (!ok) {
      FAIL_CHECK("element " << i << ": got " << values[i] << ", want " << want[i]);
      return;
    }
  }
  SUCCEED();
}

// fn must throw E whose message contains every fragment (the op name at least).
template <typename E, typename Fn>
inline void expect_error(Fn fn, const std::vector<std::string>& fragments) {
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

inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous:
      return "contiguous";
    case Layout::Transposed:
      return "transposed";
    case Layout::Narrowed:
      return "narrowed";
    case Layout::Expanded:
      return "expanded";
  }
  return "?";
}

}  // namespace
