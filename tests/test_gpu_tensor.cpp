// CUDA storage, the caching allocator and copies between host and device.
#include "gpu_test_util.hpp"

#include "tensor/cuda/device_memory.hpp"

TEST_CASE("host -> device -> host round trip keeps every dtype's bits") {
  for (DType dtype : kAllDTypes) {
    Tensor host = random_input({37, 5}, dtype, 1, -50, 50);
    Tensor device = host.to(kGpu);
    REQUIRE(device.device() == kGpu);
    REQUIRE(equal(device.to(Device::cpu()), host));
  }
}

TEST_CASE("strided views copy and convert on the device") {
  Tensor host = random_input({6, 7, 4}, DType::F32, 2);
  Tensor device = host.to(kGpu);
  SECTION("transpose made contiguous") {
    REQUIRE(equal(device.transpose(0, 2).contiguous().to(Device::cpu()), host.transpose(0, 2).contiguous()));
  }
  SECTION("narrow, then dtype conversion") {
    Tensor cpu = host.narrow(1, 2, 3).to(DType::BF16);
    REQUIRE(equal(device.narrow(1, 2, 3).to(DType::BF16).to(Device::cpu()), cpu));
  }
  SECTION("copy_from a host view into a device view") {
    Tensor target = Tensor::zeros({7, 6}, DType::F64, kGpu);
    target.narrow(0, 1, 4).copy_from(host.select(2, 1).transpose(0, 1).narrow(0, 1, 4));
    Tensor expected = Tensor::zeros({7, 6}, DType::F64);
    expected.narrow(0, 1, 4).copy_from(host.select(2, 1).transpose(0, 1).narrow(0, 1, 4));
    REQUIRE(equal(target.to(Device::cpu()), expected));
  }
  SECTION("broadcast source and fill") {
    Tensor row = Tensor::from_vector<float>({1, 2, 3, 4}, {4});
    Tensor target = Tensor::empty({3, 4}, DType::F32, kGpu);
    target.copy_from(row.to(kGpu));
    REQUIRE(target.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4});
    target.narrow(1, 1, 2).fill(-1.5);
    REQUIRE(target.to_vector<float>() == std::vector<float>{1, -1.5, -1.5, 4, 1, -1.5, -1.5, 4, 1, -1.5, -1.5, 4});
  }
}

TEST_CASE("the caching allocator serves repeated shapes without cudaMalloc") {
  Tensor warm = Tensor::empty({1024, 1024}, DType::F32, kGpu);
  warm = Tensor();
  const auto before = cuda::allocator_stats(0);
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({1024, 1024}, DType::F32, kGpu);
    REQUIRE(t.data_ptr() != nullptr);
  }
  const auto after = cuda::allocator_stats(0);
  REQUIRE(after.device_mallocs == before.device_mallocs);
  REQUIRE(after.cache_hits == before.cache_hits + 10);
}

TEST_CASE("device errors are typed and name the call") {
  REQUIRE_THROWS_AS(Tensor::empty({1}, DType::F32, Device::cuda(cuda::device_count())), DeviceError);
  // More memory than any GPU has: cudaMalloc fails, and the message says so.
  try {
    Tensor::empty({int64_t(1) << 50}, DType::U8, kGpu);
    FAIL("allocation of 1 PiB succeeded");
  } catch (const DeviceError& e) {
    REQUIRE(std::string(e.what()).find("cudaMalloc") != std::string::npos);
  }
  Tensor host = Tensor::zeros({2}, DType::F32);
  REQUIRE_THROWS_AS(add(host.to(kGpu), host), DeviceError);
  REQUIRE_THROWS_AS(Tensor::zeros({2}, DType::F32, kGpu).data<float>(), DeviceError);
}
