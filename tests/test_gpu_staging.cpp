// CUDA tensors on the MPI backend, staged through pinned host memory (collectives/
// device_staging.hpp): every collective on GPU tensors must give what the same collective gives
// on the same values in CPU tensors. Runs on any number of ranks sharing one GPU (mpirun -np 2
// on a one-GPU machine is the case it exists for).
#include "gpu_test_util.hpp"

#include "collectives/device_staging.hpp"
#include "collectives/mpi/mpi_backend.hpp"
#include "collectives/runtime.hpp"

#include <numeric>

namespace {

Tensor values_of(int64_t n, DType dtype, int rank, uint64_t salt) {
  return random_input({n}, dtype, uint64_t(1000 * salt + 7 * rank), -4, 4);
}

// Every collective of the backend on tensors made on `device` from the same host values (the
// seed depends on the rank, so ranks contribute different data). Returns the results, on the host.
std::vector<Tensor> run_collectives(detail::CommBackend& comm, Device device, DType dtype) {
  const int rank = comm.rank(), size = comm.size();
  auto on = [&](const Tensor& host) { return host.to(device); };
  auto empty = [&](int64_t n) { return Tensor::zeros({n}, dtype, device); };
  std::vector<Tensor> results;
  auto keep = [&](const Tensor& t) { results.push_back(t.to(Device::cpu())); };

  // all_reduce: out of place, in place (one buffer as in and out), and async (already complete).
  Tensor in = on(values_of(1000, dtype, rank, 1));
  Tensor out = empty(1000);
  comm.all_reduce(in, out, ReduceOp::Sum, false);
  keep(out);
  keep(in);  // unchanged
  Tensor buffer = on(values_of(333, dtype, rank, 2));
  comm.all_reduce(buffer, buffer, ReduceOp::Max, false);
  keep(buffer);
  Tensor async_buffer = on(values_of(5000, dtype, rank, 3));
  comm.all_reduce(async_buffer, async_buffer, ReduceOp::Sum, true).wait();
  keep(async_buffer);

  // broadcast from the last rank.
  Tensor shared = on(values_of(77, dtype, rank, 4));
  comm.broadcast(shared, size - 1, false);
  keep(shared);

  // Uneven counts (an empty block on rank 1 where there is one).
  std::vector<int64_t> counts(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) counts[size_t(r)] = r == 1 ? 0 : 3 * r + 5;
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  Tensor gathered = empty(total);
  comm.all_gather_v(on(values_of(counts[size_t(rank)], dtype, rank, 5)), gathered, counts, false);
  keep(gathered);
  Tensor part = empty(counts[size_t(rank)]);
  comm.reduce_scatter_v(on(values_of(total, dtype, rank, 6)), part, counts, ReduceOp::Sum, false);
  keep(part);

  // all_to_all_v: rank r sends (r + j + 1) elements to rank j.
  std::vector<int64_t> send_counts(static_cast<size_t>(size)), recv_counts(static_cast<size_t>(size));
  for (int j = 0; j < size; ++j) {
    send_counts[size_t(j)] = rank + j + 1;
    recv_counts[size_t(j)] = j + rank + 1;
  }
  const int64_t sent = std::accumulate(send_counts.begin(), send_counts.end(), int64_t(0));
  const int64_t received = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t(0));
  Tensor exchanged = empty(received);
  comm.all_to_all_v(on(values_of(sent, dtype, rank, 7)), send_counts, exchanged, recv_counts, false);
  keep(exchanged);

  // scatter_v and gather_v rooted at rank 0.
  Tensor piece = empty(counts[size_t(rank)]);
  comm.scatter_v(on(values_of(total, dtype, rank, 8)), counts, piece, 0, false);
  keep(piece);
  Tensor collected = empty(total);
  comm.gather_v(on(values_of(counts[size_t(rank)], dtype, rank, 9)), collected, counts, 0, false);
  if (rank == 0) keep(collected);

  // send/recv around a ring (even ranks send first, so that two ranks do not wait on each other).
  if (size > 1) {
    Tensor outgoing = on(values_of(250, dtype, rank, 10));
    Tensor incoming = empty(250);
    const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
    if (rank % 2 == 0) {
      comm.send(outgoing, next, 3, false);
      comm.recv(incoming, previous, 3, false);
    } else {
      comm.recv(incoming, previous, 3, false);
      comm.send(outgoing, next, 3, false);
    }
    keep(incoming);
  }
  comm.barrier();
  return results;
}

}  // namespace

TEST_CASE("the MPI backend moves CUDA tensors through host staging like CPU tensors") {
  // The backend is called directly: a Communicator over one rank never reaches it.
  auto staged = detail::stage_device_tensors(detail::create_mpi_world(nullptr, nullptr));
  REQUIRE(staged->name() == "mpi");
  for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
    INFO(dtype_name(dtype) << " on " << staged->size() << " rank(s)");
    const std::vector<Tensor> on_cpu = run_collectives(*staged, Device::cpu(), dtype);
    const std::vector<Tensor> on_gpu = run_collectives(*staged, kGpu, dtype);
    REQUIRE(on_gpu.size() == on_cpu.size());
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      INFO("result " << i);
      // The same reductions in the same order on the same host values: bit-identical.
      CHECK(equal(on_gpu[i], on_cpu[i]));
    }
  }
}

TEST_CASE("the world communicator and its splits take CUDA tensors") {
  Communicator comm = world();
  const int rank = comm.rank(), size = comm.size();
  Tensor host = values_of(4096, DType::F32, rank, 11);
  Tensor on_gpu = host.to(kGpu);
  comm.all_reduce(on_gpu, ReduceOp::Sum);
  comm.all_reduce(host, ReduceOp::Sum);
  require_matches(on_gpu, host, 0, 0);

  // A split (every rank its own group, then all together again) stages the same way.
  Communicator together = comm.split(0, size - rank);  // reversed order
  Tensor mine = Tensor::full({3}, double(rank), DType::F32, kGpu);
  Tensor all = Tensor::empty({3 * int64_t(size)}, DType::F32, kGpu);
  together.all_gather(mine, all);
  const std::vector<float> got = all.to_vector<float>();
  for (int i = 0; i < size; ++i) CHECK(got[size_t(3 * i)] == float(size - 1 - i));
}
