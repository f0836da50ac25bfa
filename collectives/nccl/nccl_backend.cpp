// NCCL backend: every collective of CommBackend on one GPU per rank, on that GPU's current
// stream. Forms NCCL lacks are grouped point-to-point calls (all_gather_v, all_to_all_v,
// scatter_v, gather_v) or grouped ncclReduce calls, one per root (reduce_scatter_v).
#include "collectives/nccl/nccl_backend.hpp"

#include "collectives/watchdog.hpp"
#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/device_memory.hpp"

#include <nccl.h>

#include <chrono>
#include <numeric>
#include <thread>

namespace dtensor::detail {

namespace {

void nccl_check(ncclResult_t status, const char* call, ncclComm_t comm = nullptr) {
  if (status == ncclSuccess || status == ncclInProgress) return;
  const char* detail_text = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  fail<CommError>(call, "{}{}{}", ncclGetErrorString(status), detail_text && *detail_text ? ": " : "",
                  detail_text ? detail_text : "");
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
    case DType::U8:
      return ncclUint8;
    case DType::I8:
      return ncclInt8;
  }
  fail<DTypeError>("nccl", "no NCCL type for dtype code {}", int(dtype));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return ncclSum;
    case ReduceOp::Avg:
      return ncclAvg;
    case ReduceOp::Max:
      return ncclMax;
    case ReduceOp::Min:
      return ncclMin;
    case ReduceOp::Prod:
      return ncclProd;
  }
  fail<ValueError>("nccl", "unknown reduce op code {}", int(op));
}

// The NCCL communicator, shared by the backend and its unfinished Works. An aborted one cannot
// be used again, nor destroyed (ncclCommAbort frees it).
class NcclComm {
 public:
  explicit NcclComm(ncclComm_t comm) : comm_(comm) {}
  ~NcclComm() {
    if (!aborted_) ncclCommDestroy(comm_);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  ncclComm_t get(const char* op) const {
    check<CommError>(!aborted_, op, "the NCCL communicator was aborted after an earlier error or timeout");
    return comm_;
  }
  // Ends every operation in flight, so that the peers fail instead of waiting forever.
  void abort() {
    if (aborted_) return;
    ncclCommAbort(comm_);
    aborted_ = true;
  }

 private:
  ncclComm_t comm_;
  bool aborted_ = false;
};

// Raises the communicator's asynchronous error, if any, after aborting it: a failed NCCL
// communicator cannot be used again and its peers would otherwise wait forever.
void raise_async_error(NcclComm& nccl, const char* op) {
  ncclComm_t comm = nccl.get(op);
  ncclResult_t async = ncclSuccess;
  nccl_check(ncclCommGetAsyncError(comm, &async), "ncclCommGetAsyncError", comm);
  if (async != ncclSuccess && async != ncclInProgress) {
    const std::string text = ncclGetErrorString(async);
    const char* last = ncclGetLastError(comm);
    const std::string last_text = last ? last : "";
    nccl.abort();
    fail<CommError>(op, "asynchronous NCCL error: {}{}{}", text, last_text.empty() ? "" : ": ", last_text);
  }
}

// Waits for an event recorded after an NCCL operation, polling the communicator's error state
// so that a failed peer ends in CommError instead of a hang, and aborting the communicator once
// the wait exceeds DTENSOR_TIMEOUT (collectives/watchdog.hpp).
class EventWork final : public WorkImpl {
 public:
  EventWork(std::shared_ptr<NcclComm> nccl, int device, cudaStream_t stream, std::vector<Tensor> keep)
      : nccl_(std::move(nccl)), device_(device), keep_(std::move(keep)) {
    cuda::DeviceGuard guard(device_);
    cuda::cuda_check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    cuda::cuda_check(cudaEventRecord(event_, stream), "cudaEventRecord");
  }
  ~EventWork() override {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }

  bool test() override {
    if (done_) return true;
    cuda::DeviceGuard guard(device_);
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) {
      (void)cudaGetLastError();
      raise_async_error(*nccl_, "Work::test");
      return false;
    }
    cuda::cuda_check(status, "cudaEventQuery");
    done_ = true;
    keep_.clear();
    return true;
  }

  void wait() override {
    const double timeout = collective_timeout_seconds();
    const auto start = std::chrono::steady_clock::now();
    while (!test()) {
      if (timeout > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout) {
        nccl_->abort();
        fail<CommError>("Work::wait",
                        "an NCCL operation waited more than DTENSOR_TIMEOUT ({} s); its communicator was aborted",
                        timeout);
      }
      std::this_thread::yield();
    }
  }

 private:
  std::shared_ptr<NcclComm> nccl_;
  int device_;
  cudaEvent_t event_ = nullptr;
  std::vector<Tensor> keep_;  // the buffers stay allocated until the operation is done
  bool done_ = false;
};

std::vector<int64_t> offsets_of(std::span<const int64_t> counts) {
  std::vector<int64_t> offsets(counts.size() + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
  return offsets;
}

bool all_equal(std::span<const int64_t> counts) {
  return std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; });
}

void* element(const Tensor& t, int64_t index) {
  return static_cast<char*>(t.data_ptr()) + size_t(index) * t.element_size();
}

class NcclBackend final : public CommBackend {
 public:
  NcclBackend(std::shared_ptr<CommBackend> host, ncclComm_t comm, int device)
      : host_(std::move(host)), nccl_(std::make_shared<NcclComm>(comm)), device_(device) {}

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string_view name() const override { return "nccl"; }
  std::vector<int> world_ranks() const override { return host_->world_ranks(); }
  int world_size() const override { return host_->world_size(); }

  Work all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async) override {
    if (on_host(in)) return host_->all_reduce(in, out, op, async);
    return run(
        "ncclAllReduce", async,
        [&](cudaStream_t s) {
          nccl_check(ncclAllReduce(in.data_ptr(), out.data_ptr(), size_t(in.numel()), nccl_type(in.dtype()),
                                   nccl_op(op), comm(), s),
                     "ncclAllReduce", comm());
        },
        in, out);
  }

  Work broadcast(const Tensor& buffer, int root, bool async) override {
    if (on_host(buffer)) return host_->broadcast(buffer, root, async);
    return run(
        "ncclBroadcast", async,
        [&](cudaStream_t s) {
          nccl_check(ncclBroadcast(buffer.data_ptr(), buffer.data_ptr(), size_t(buffer.numel()),
                                   nccl_type(buffer.dtype()), root, comm(), s),
                     "ncclBroadcast", comm());
        },
        buffer);
  }

  Work all_gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, bool async) override {
    if (on_host(in)) return host_->all_gather_v(in, out, counts, async);
    if (all_equal(counts)) {
      return run(
          "ncclAllGather", async,
          [&](cudaStream_t s) {
            nccl_check(
                ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(counts[0]), nccl_type(in.dtype()), comm(), s),
                "ncclAllGather", comm());
          },
          in, out);
    }
    const std::vector<int64_t> offsets = offsets_of(counts);
    return run(
        "all_gather_v", async,
        [&](cudaStream_t s) {
          grouped("all_gather_v", [&] {
            for (int peer = 0; peer < size(); ++peer) {
              send_part(in, 0, in.numel(), peer, s);
              recv_part(out, offsets[size_t(peer)], counts[size_t(peer)], peer, s);
            }
          });
        },
        in, out);
  }

  Work reduce_scatter_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, ReduceOp op,
                        bool async) override {
    if (on_host(in)) return host_->reduce_scatter_v(in, out, counts, op, async);
    if (all_equal(counts)) {
      return run(
          "ncclReduceScatter", async,
          [&](cudaStream_t s) {
            nccl_check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(counts[0]), nccl_type(in.dtype()),
                                         nccl_op(op), comm(), s),
                       "ncclReduceScatter", comm());
          },
          in, out);
    }
    // One ncclReduce per block, rooted at the rank that keeps it, fused into one group.
    const std::vector<int64_t> offsets = offsets_of(counts);
    return run(
        "reduce_scatter_v", async,
        [&](cudaStream_t s) {
          grouped("reduce_scatter_v", [&] {
            for (int root = 0; root < size(); ++root) {
              if (counts[size_t(root)] == 0) continue;
              nccl_check(ncclReduce(element(in, offsets[size_t(root)]), root == rank() ? out.data_ptr() : nullptr,
                                    size_t(counts[size_t(root)]), nccl_type(in.dtype()), nccl_op(op), root, comm(), s),
                         "ncclReduce", comm());
            }
          });
        },
        in, out);
  }

  Work all_to_all_v(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, bool async) override {
    if (on_host(in)) return host_->all_to_all_v(in, send_counts, out, recv_counts, async);
    const std::vector<int64_t> send_offsets = offsets_of(send_counts);
    const std::vector<int64_t> recv_offsets = offsets_of(recv_counts);
    return run(
        "all_to_all_v", async,
        [&](cudaStream_t s) {
          grouped("all_to_all_v", [&] {
            for (int peer = 0; peer < size(); ++peer) {
              send_part(in, send_offsets[size_t(peer)], send_counts[size_t(peer)], peer, s);
              recv_part(out, recv_offsets[size_t(peer)], recv_counts[size_t(peer)], peer, s);
            }
          });
        },
        in, out);
  }

  Work scatter_v(const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root, bool async) override {
    if (on_host(out)) return host_->scatter_v(in, counts, out, root, async);
    const std::vector<int64_t> offsets = offsets_of(counts);
    return run(
        "scatter_v", async,
        [&](cudaStream_t s) {
          grouped("scatter_v", [&] {
            if (rank() == root) {
              for (int peer = 0; peer < size(); ++peer)
                send_part(in, offsets[size_t(peer)], counts[size_t(peer)], peer, s);
            }
            recv_part(out, 0, counts[size_t(rank())], root, s);
          });
        },
        in, out);
  }

  Work gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root, bool async) override {
    if (on_host(in)) return host_->gather_v(in, out, counts, root, async);
    const std::vector<int64_t> offsets = offsets_of(counts);
    return run(
        "gather_v", async,
        [&](cudaStream_t s) {
          grouped("gather_v", [&] {
            send_part(in, 0, in.numel(), root, s);
            if (rank() == root) {
              for (int peer = 0; peer < size(); ++peer)
                recv_part(out, offsets[size_t(peer)], counts[size_t(peer)], peer, s);
            }
          });
        },
        in, out);
  }

  // NCCL has no tags: messages between one pair of ranks match in the order they were posted.
  Work send(const Tensor& buffer, int dst, int tag, bool async) override {
    if (on_host(buffer)) return host_->send(buffer, dst, tag, async);
    return run(
        "ncclSend", async, [&](cudaStream_t s) { send_part(buffer, 0, buffer.numel(), dst, s); }, buffer);
  }

  Work recv(const Tensor& buffer, int src, int tag, bool async) override {
    if (on_host(buffer)) return host_->recv(buffer, src, tag, async);
    return run(
        "ncclRecv", async, [&](cudaStream_t s) { recv_part(buffer, 0, buffer.numel(), src, s); }, buffer);
  }

  // The host barrier, after this rank's queued GPU work has finished.
  void barrier() override {
    cuda::synchronize(device_);
    raise_async_error(*nccl_, "barrier");
    host_->barrier();
  }

  std::shared_ptr<CommBackend> split(int color, int key) override {
    std::shared_ptr<CommBackend> host = host_->split(color, key);
    cuda::DeviceGuard guard(device_);
    ncclComm_t child = nullptr;
    nccl_check(ncclCommSplit(comm(), color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, nullptr), "ncclCommSplit",
               comm());
    if (host == nullptr || child == nullptr) return nullptr;
    return std::make_shared<NcclBackend>(std::move(host), child, device_);
  }

 private:
  // Tensors on the host go through MPI; on a GPU they must be on this rank's NCCL device.
  bool on_host(const Tensor& t) const {
    if (!t.defined() || t.device().is_cpu()) return true;
    check<DeviceError>(t.device() == Device::cuda(device_), "nccl", "tensor on {}, but this rank's NCCL device is {}",
                       t.device(), Device::cuda(device_));
    return false;
  }

  // Per blocking call this does no heap allocation and touches no reference count: the tensors
  // to keep alive are copied (a Tensor copy allocates its shape and strides) only for an async
  // call, whose Work must hold them. A blocking call needs no keep-alive: later work on the
  // stream, including a reuse of the freed blocks, runs after the collective (stream order).
  template <typename Enqueue, typename... Keep>
  Work run(const char* op, bool async, Enqueue&& enqueue, const Keep&... keep) {
    cuda::DeviceGuard guard(device_);
    cudaStream_t stream = cuda::current_stream(device_);
    enqueue(stream);
    // Asking NCCL for its error state costs about a microsecond, as much as a small collective:
    // a blocking call asks every kErrorPollInterval calls; Work::wait and barrier always ask.
    if (++calls_since_poll_ >= kErrorPollInterval) {
      calls_since_poll_ = 0;
      raise_async_error(*nccl_, op);
    }
    if (!async) return {};
    return Work(std::make_shared<EventWork>(nccl_, device_, stream, std::vector<Tensor>{keep...}));
  }

  template <typename Calls>
  void grouped(const char* op, Calls&& calls) {
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    try {
      calls();
    } catch (...) {
      ncclGroupEnd();
      throw;
    }
    nccl_check(ncclGroupEnd(), op, comm());
  }

  // A block to or from oneself is a device copy (NCCL would also allow it; the copy is cheaper).
  void send_part(const Tensor& t, int64_t offset, int64_t count, int peer, cudaStream_t s) {
    if (count == 0) return;
    if (peer == rank()) {
      self_block_ = {element(t, offset), count};
      return;
    }
    nccl_check(ncclSend(element(t, offset), size_t(count), nccl_type(t.dtype()), peer, comm(), s), "ncclSend", comm());
  }

  void recv_part(const Tensor& t, int64_t offset, int64_t count, int peer, cudaStream_t s) {
    if (count == 0) return;
    if (peer == rank()) {
      cuda::cuda_check(cudaMemcpyAsync(element(t, offset), self_block_.first, size_t(count) * t.element_size(),
                                       cudaMemcpyDeviceToDevice, s),
                       "cudaMemcpyAsync");
      return;
    }
    nccl_check(ncclRecv(element(t, offset), size_t(count), nccl_type(t.dtype()), peer, comm(), s), "ncclRecv", comm());
  }

  ncclComm_t comm() const { return nccl_->get("nccl"); }

  static constexpr int kErrorPollInterval = 64;

  std::shared_ptr<CommBackend> host_;
  std::shared_ptr<NcclComm> nccl_;
  int calls_since_poll_ = 0;
  int device_;
  std::pair<const void*, int64_t> self_block_{nullptr, 0};  // this rank's own block, sent to itself
};

}  // namespace

std::shared_ptr<CommBackend> create_nccl_backend(std::shared_ptr<CommBackend> host, int device) {
  ncclUniqueId id{};
  if (host->rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  Tensor id_bytes = Tensor::from_blob(&id, {int64_t(sizeof(id))}, DType::U8);
  if (host->size() > 1) host->broadcast(id_bytes, 0, false);
  cuda::DeviceGuard guard(device);
  ncclComm_t comm = nullptr;
  nccl_check(ncclCommInitRank(&comm, host->size(), id, host->rank()), "ncclCommInitRank");
  return std::make_shared<NcclBackend>(std::move(host), comm, device);
}

}  // namespace dtensor::detail
