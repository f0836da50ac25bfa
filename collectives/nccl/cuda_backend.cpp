// The entry point of libdtensor_cuda.so, the CUDA backend library. libdtensor dlopens it the
// first time a CUDA device is needed (tensor/device_kernels.hpp) and calls this function once;
// it registers the CUDA kernel table and the NCCL collectives backend. It lives at the top of
// the library's layers: it is the one file that sees both tensor/cuda/ and collectives/nccl/.
#include "collectives/comm_backends.hpp"
#include "collectives/nccl/nccl_backend.hpp"
#include "tensor/cuda/cuda_kernels.hpp"

extern "C" __attribute__((visibility("default"))) void dtensor_register_backend() {
  using namespace dtensor;
  register_device_kernels(DeviceType::CUDA, cuda::make_kernels());
  detail::register_comm_backend("nccl", [](std::shared_ptr<detail::CommBackend> host, Device device) {
    return detail::create_nccl_backend(std::move(host), device.index);
  });
}
