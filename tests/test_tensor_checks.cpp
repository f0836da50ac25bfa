// Whole-tensor comparisons, devices and argument checks (CPU kernels) against naive references;
// shared helpers in tensor_ops_reference.hpp.
#include "skip.hpp"
#include "tensor/device_kernels.hpp"
#include "tensor_ops_reference.hpp"

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
  CHECK(allclose(make({0, 2}, DType::I8, Layout::Contiguous), make({0, 2}, DType::F16, Layout::Contiguous)));

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

  CHECK(max_abs_diff(from_values({3}, DType::F32, {1, 2, 3}), from_values({3}, DType::I32, {1, 4, 2})) == 2.0);
  CHECK(max_abs_diff(a, a) == 0.0);
  CHECK(std::isnan(max_abs_diff(a, from_values({3}, DType::F32, {1, nan, 3}))));
  expect_error<ShapeError>([&] { max_abs_diff(a, t); }, {"[max_abs_diff]", "[3]", "[3, 4]"});
}

TEST_CASE("kernels refuse tensors that are not on the cpu") {
  // The tensor below claims host memory as cuda:0; where a GPU is visible the CUDA backend would
  // take it, so the refusals are checked only where none is.
  if (device_count(DeviceType::CUDA) > 0) SKIP_TEST("a GPU is visible: cuda:0 tensors go to the CUDA backend");
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
  expect_error<DeviceError>([&] { embedding(g, from_values({1}, DType::I64, {0})); }, {"[embedding]"});
  // Comparisons copy device tensors to the host; a GPU that does not exist is refused by name.
  expect_error<DeviceError>([&] { allclose(c, g); }, {"[allclose]", "cuda:0"});
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
