// Reductions and softmax (CPU kernels) against naive references;
// shared helpers in tensor_ops_reference.hpp.
#include "tensor_ops_reference.hpp"

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

const std::vector<std::vector<int64_t>> kDimSets = {{}, {0}, {1}, {2}, {-1}, {0, 2}, {2, 1}, {0, 1, 2}};
const Layout kAllLayouts[] = {Layout::Contiguous, Layout::Transposed, Layout::Narrowed, Layout::Expanded};

}  // namespace

TEST_CASE("sum, mean, amax, amin over dim subsets match the reference") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : kAllLayouts) {
      const Tensor a = make({3, 4, 5}, dt, layout, 7);
      for (const auto& dims : kDimSets) {
        for (bool keepdim : {false, true}) {
          INFO(dtype_name(dt) << " " << layout_name(layout) << " dims " << shape_str(dims) << " keepdim " << keepdim);
          const std::vector<bool> mask = mask_of(dims, 3);
          const Reduced s = ref_reduce(a, mask, 0, [](double x, double y) { return x + y; });
          const Shape shape = drop_reduced(s.shape, mask, keepdim);
          std::vector<double> wrapped;
          for (double v : s.values) wrapped.push_back(wrap(dt, v));
          const Tol sum_tol = {arith_tol(dt).rel * 2, 0};  // rounding of partial sums too
          check_close(sum(a, dims, keepdim), shape, wrapped, sum_tol, s.magnitude);
          const Reduced mx = ref_reduce(a, mask, -1e300, [](double x, double y) { return std::max(x, y); });
          const Reduced mn = ref_reduce(a, mask, 1e300, [](double x, double y) { return std::min(x, y); });
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
  check_close(log_softmax(a, 0), {3}, {-2 - std::log(z), -1 - std::log(z), -std::log(z)}, {1e-6, 0});
  check_close(softmax(make({2, 0}, DType::F32, Layout::Contiguous), 1), {2, 0}, {}, {0, 0});
  expect_error<DTypeError>([] { softmax(from_values({2}, DType::I64, {1, 2}), 0); }, {"[softmax]", "i64"});
}
