// The NCCL backend on the GPUs of this job (one process per GPU; one process on a one-GPU
// machine). Results are compared with the same collective on CPU tensors, which goes through MPI.
#include "gpu_test_util.hpp"

#include "collectives/mpi/mpi_backend.hpp"
#include "collectives/nccl.hpp"
#include "collectives/nccl/nccl_backend.hpp"
#include "collectives/runtime.hpp"

#include <numeric>

namespace {

Tensor numbered(int64_t n, DType dtype, int rank) { return random_input({n}, dtype, uint64_t(100 + rank), -4, 4); }

}  // namespace

TEST_CASE("nccl_world: collectives on GPU tensors match the MPI path on CPU tensors") {
  Communicator gpu = nccl_world();
  Communicator cpu = world();
  const Device device = nccl_device();
  REQUIRE(gpu.backend_name() == "nccl");
  REQUIRE(gpu.size() == cpu.size());
  const int size = gpu.size(), rank = gpu.rank();

  for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
    INFO(dtype_name(dtype));
    Tensor host = numbered(1000, dtype, rank);
    Tensor on_gpu = host.to(device);
    gpu.all_reduce(on_gpu, ReduceOp::Sum);
    cpu.all_reduce(host, ReduceOp::Sum);
    require_matches(on_gpu, host);

    Tensor gathered_gpu = Tensor::empty({1000 * size}, dtype, device);
    Tensor gathered_cpu = Tensor::empty({1000 * size}, dtype);
    gpu.all_gather(host.to(device), gathered_gpu);
    cpu.all_gather(host, gathered_cpu);
    require_matches(gathered_gpu, gathered_cpu);
  }
  // Uneven forms: rank r holds r + 1 elements (an empty block too where size allows).
  std::vector<int64_t> counts(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) counts[size_t(r)] = r == 1 ? 0 : r + 1;
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  Tensor mine = numbered(counts[size_t(rank)], DType::F32, rank);
  Tensor out_gpu = Tensor::empty({total}, DType::F32, device);
  Tensor out_cpu = Tensor::empty({total}, DType::F32);
  gpu.all_gather_v(mine.to(device), out_gpu, counts);
  cpu.all_gather_v(mine, out_cpu, counts);
  require_matches(out_gpu, out_cpu);

  Tensor full = numbered(total, DType::F32, rank);
  Tensor part_gpu = Tensor::empty({counts[size_t(rank)]}, DType::F32, device);
  Tensor part_cpu = Tensor::empty({counts[size_t(rank)]}, DType::F32);
  gpu.reduce_scatter_v(full.to(device), part_gpu, counts);
  cpu.reduce_scatter_v(full, part_cpu, counts);
  require_matches(part_gpu, part_cpu);

  Tensor send = numbered(int64_t(size) * 3, DType::F32, rank);
  Tensor a2a_gpu = Tensor::empty({int64_t(size) * 3}, DType::F32, device);
  Tensor a2a_cpu = Tensor::empty({int64_t(size) * 3}, DType::F32);
  gpu.all_to_all(send.to(device), a2a_gpu);
  cpu.all_to_all(send, a2a_cpu);
  require_matches(a2a_gpu, a2a_cpu);

  // Async: the Work waits on the CUDA event of the operation.
  Tensor x = Tensor::full({4096}, 1.0, DType::F32, device);
  Work work = gpu.all_reduce(x, ReduceOp::Sum, CommMode::Async);
  work.wait();
  REQUIRE(work.test());
  REQUIRE(x.to_vector<float>()[4095] == float(size));
  gpu.barrier();
}

TEST_CASE("the NCCL backend itself runs every collective (also with one rank)") {
  // Communicator short-circuits a group of one; the backend is called here directly so that
  // NCCL runs even on a single GPU.
  auto backend = detail::create_nccl_backend(detail::create_mpi_world(nullptr, nullptr), nccl_device().index);
  if (backend->size() != 1) return;  // the multi-rank case is the test above
  const Device device = nccl_device();
  Tensor in = numbered(777, DType::BF16, 0);
  Tensor out = Tensor::empty({777}, DType::BF16, device);
  backend->all_reduce(in.to(device), out, ReduceOp::Max, false);
  require_matches(out, in);
  const std::vector<int64_t> counts{777};
  backend->all_gather_v(in.to(device), out, counts, false);
  require_matches(out, in);
  backend->reduce_scatter_v(in.to(device), out, counts, ReduceOp::Sum, false);
  require_matches(out, in);
  backend->all_to_all_v(in.to(device), counts, out, counts, false);
  require_matches(out, in);
  Tensor buffer = in.to(device);
  backend->broadcast(buffer, 0, true).wait();
  require_matches(buffer, in);
  backend->scatter_v(in.to(device), counts, out, 0, false);
  require_matches(out, in);
  backend->gather_v(in.to(device), out, counts, 0, false);
  require_matches(out, in);
  // A split gives a working child communicator; a negative color joins none.
  auto child = backend->split(0, 0);
  REQUIRE(child != nullptr);
  child->all_reduce(in.to(device), out, ReduceOp::Sum, true).wait();
  require_matches(out, in);
}

TEST_CASE("NCCL communicators refuse tensors on the wrong device") {
  Communicator gpu = nccl_world();
  Tensor cpu_out = Tensor::zeros({4}, DType::F32);
  REQUIRE_THROWS_AS(gpu.all_reduce(Tensor::zeros({4}, DType::F32, nccl_device()), cpu_out, ReduceOp::Sum), DeviceError);
}
