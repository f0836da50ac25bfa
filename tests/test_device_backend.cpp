// Loading the CUDA backend library (tensor/device_kernels.hpp). It is loaded once per process, so
// tests/meson.build runs each tag in its own process with its own environment:
//   [missing]          DTENSOR_CUDA_BACKEND names a file that does not exist
//   [not-a-library]    DTENSOR_CUDA_BACKEND names a file that is not a shared library
//   [with-backend]     a build with CUDA: the library beside libdtensor loads; no GPU is needed
//   [without-backend]  a CPU-only build: no library beside libdtensor
// In every case the CPU path works as before.
#include "collectives/nccl.hpp"
#include "tensor/device_kernels.hpp"
#include "tensor/ops.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <functional>
#include <string>

using namespace dtensor;
using Catch::Contains;

namespace {

// The message of the DeviceError `fn` raises ("" when it raises none).
std::string device_error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const DeviceError& e) {
    return e.what();
  }
  return "";
}

std::string chosen_library() {
  const char* path = std::getenv("DTENSOR_CUDA_BACKEND");
  REQUIRE(path != nullptr);
  return path;
}

void require_cpu_path_works() {
  const Tensor a = Tensor::full({2, 3}, 1.5, DType::F32);
  const Tensor sum = add(a, a);
  CHECK(sum.to_vector<float>() == std::vector<float>(6, 3.0f));
  CHECK(matmul(a, a.transpose(0, 1)).to_vector<float>() == std::vector<float>(4, 6.75f));
}

// Every way the core reaches a CUDA device raises the load failure, naming the op and `fragments`.
void require_load_failure(const std::vector<std::string>& fragments) {
  float storage[4] = {};
  const Tensor on_gpu = Tensor::from_blob(storage, {4}, DType::F32, {}, Device::cuda(0));
  const std::vector<std::pair<std::string, std::function<void()>>> requests = {
      {"[Storage::allocate]", [] { Tensor::empty({2}, DType::F32, Device::cuda(0)); }},
      {"[exp]", [&] { exp(on_gpu); }},
      {"[copy_from]", [&] { on_gpu.to(Device::cpu()); }},
      {"[local_gpu]", [] { local_gpu(); }},
  };
  for (const auto& [op, request] : requests) {
    const std::string message = device_error_of(request);
    INFO(message);
    CHECK_THAT(message,
               Contains(op) && Contains("libdtensor_cuda.so cannot be loaded") && Contains("DTENSOR_CUDA_BACKEND"));
    for (const std::string& fragment : fragments) CHECK_THAT(message, Contains(fragment));
  }
  CHECK_FALSE(device_backend_available(DeviceType::CUDA));
  CHECK(device_count(DeviceType::CUDA) == 0);
}

}  // namespace

TEST_CASE("a backend library that does not exist: DeviceError naming its path and dlerror's reason", "[missing]") {
  require_load_failure({chosen_library() + ": ", "No such file or directory"});
  require_cpu_path_works();
}

TEST_CASE("a file that is not a shared library: DeviceError naming its path and dlerror's reason", "[not-a-library]") {
  require_load_failure({chosen_library() + ": ", "invalid ELF header"});
  require_cpu_path_works();
}

TEST_CASE("a CPU-only build: DeviceError naming the library looked for beside libdtensor", "[without-backend]") {
  require_load_failure({"/libdtensor_cuda.so: ", "No such file or directory"});
  require_cpu_path_works();
}

TEST_CASE("the backend beside libdtensor loads; a GPU that does not exist gets the backend's own error",
          "[with-backend]") {
  REQUIRE(device_backend_available(DeviceType::CUDA));
  const int visible = device_count(DeviceType::CUDA);
  const std::string message = device_error_of([&] { Tensor::empty({2}, DType::F32, Device::cuda(visible)); });
  INFO(message);
  CHECK_THAT(message, Contains(fmt::format("cuda:{} does not exist ({} CUDA devices visible)", visible, visible)));
  CHECK_THAT(message, !Contains("cannot be loaded"));
  require_cpu_path_works();
}
