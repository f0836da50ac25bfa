// nccl_world(), nccl_device() and local_gpu() (collectives/nccl.hpp): the GPU of each rank is
// chosen here, from MPI and the number of GPUs visible; the NCCL transport itself comes from the
// CUDA backend library (collectives/nccl/nccl_backend.cpp), loaded on the first call.
#include "collectives/nccl.hpp"

#include "collectives/comm_backends.hpp"
#include "collectives/mpi/mpi_backend.hpp"
#include "collectives/runtime.hpp"
#include "tensor/device_kernels.hpp"

#include <unistd.h>

#include <cstring>
#include <mutex>

namespace dtensor {

namespace {

// This rank's index among the ranks of `host` on the same node (by host name).
int node_local_rank(detail::CommBackend& host) {
  constexpr int64_t kNameBytes = 256;
  Tensor mine = Tensor::zeros({kNameBytes}, DType::U8);
  gethostname(static_cast<char*>(mine.data_ptr()), size_t(kNameBytes - 1));
  Tensor all = Tensor::zeros({kNameBytes * host.size()}, DType::U8);
  if (host.size() > 1) {
    std::vector<int64_t> counts(size_t(host.size()), kNameBytes);
    host.all_gather_v(mine, all, counts, false);
  } else {
    all.copy_from(mine);
  }
  const char* names = static_cast<const char*>(all.data_ptr());
  int local = 0;
  for (int r = 0; r < host.rank(); ++r) {
    if (std::strncmp(names + r * kNameBytes, names + host.rank() * kNameBytes, size_t(kNameBytes)) == 0) ++local;
  }
  return local;
}

struct NcclWorld {
  std::once_flag made;
  Communicator world;
  int device = -1;
};

NcclWorld& nccl_world_state() {
  static NcclWorld state;
  return state;
}

int gpu_of_rank(detail::CommBackend& host, const char* op) {
  load_device_backend(DeviceType::CUDA, op);  // its absence is reported as such, not as "no device"
  const int gpus = device_count(DeviceType::CUDA);
  check<DeviceError>(gpus > 0, op, "no CUDA device is visible on this rank");
  return node_local_rank(host) % gpus;
}

}  // namespace

Communicator nccl_world() {
  NcclWorld& state = nccl_world_state();
  std::call_once(state.made, [&] {
    init();  // MPI, the error rank and the job-wide terminate handler
    std::shared_ptr<detail::CommBackend> host = detail::create_mpi_world(nullptr, nullptr);
    state.device = gpu_of_rank(*host, "nccl_world");
    state.world = Communicator(detail::create_comm_backend("nccl", std::move(host), Device::cuda(state.device)));
  });
  return state.world;
}

Device local_gpu() {
  init();
  std::shared_ptr<detail::CommBackend> host = detail::create_mpi_world(nullptr, nullptr);
  return Device::cuda(gpu_of_rank(*host, "local_gpu"));
}

Device nccl_device() {
  nccl_world();
  return Device::cuda(nccl_world_state().device);
}

}  // namespace dtensor
