#include "collectives/mpi/mpi_backend.hpp"

#include "collectives/mpi/mpi_pipeline.hpp"
#include "collectives/mpi/mpi_single_copy.hpp"
#include "collectives/mpi/mpi_support.hpp"
#include "collectives/mpi/mpi_survey.hpp"
#include "collectives/reduce_kernels.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace dtensor::detail {

namespace {

// Why the constants of mpi_backend.hpp are what they are (`make bench-collectives` and
// `make bench-redistribute` show each against the raw Open MPI call):
// - reduce_scatter always runs the pipeline (direct exchange of each block + our reduction):
//   MPI_Reduce_scatter_block was never faster at 2 and 4 ranks, from 64 B to 64 MiB.
// - all_reduce uses MPI_Allreduce below 16 MiB (lower latency; keeps up while its buffers fit in
//   the last-level cache) and the pipeline above, where MPI's algorithm falls behind.
// - chunks of 1 MiB per peer: two slots of scratch stay within a 2 MiB L2.
// - streaming stores for reduce_scatter's output, not for all_reduce's, whose peer reads each
//   reduced chunk right away from cache.
// - Open MPI's single-copy CMA transport stays on (its default); large host buffers are advised
//   onto 2 MiB pages, which cuts the cost of the copies.
// - collectives into views (strided blocks) move with process_vm_readv/writev straight between
//   the views on one node (mpi_single_copy.hpp): a flat collective plus pack / unpack costs two
//   full copies, and MPI_Alltoallw with derived datatypes was slower still.

// Owns MPI's lifetime when this code started it: the last backend to go finalizes.
class MpiSession {
 public:
  explicit MpiSession(bool owns) : owns_(owns) {}
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owns_;
};

// Also true when MPI cannot even say: then it must not be called any more (used by destructors).
bool mpi_finalized() {
  int finalized = 0;
  return MPI_Finalized(&finalized) != MPI_SUCCESS || finalized != 0;
}

MpiSession::~MpiSession() {
  if (!owns_ || mpi_finalized()) return;
  int rc = MPI_Finalize();
  if (rc != MPI_SUCCESS) std::fprintf(stderr, "[MPI_Finalize] failed with MPI error %d\n", rc);
}

// MPI_THREAD_MULTIPLE is asked for so that callers may use different communicators from
// different threads; dtensor itself never calls MPI from a thread of its own, so SERIALIZED
// (one call at a time) is what it needs.
std::shared_ptr<MpiSession> start_mpi(int* argc, char*** argv) {
  int initialized = 0;
  mpi_check(MPI_Initialized(&initialized), "MPI_Initialized");
  check<CommError>(!mpi_finalized(), "init", "MPI was already finalized and cannot start again");
  int provided = 0;
  if (initialized == 0) {
    mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  } else {
    mpi_check(MPI_Query_thread(&provided), "MPI_Query_thread");
  }
  auto session = std::make_shared<MpiSession>(initialized == 0);
  mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check<CommError>(provided >= MPI_THREAD_SERIALIZED, "init",
                   "MPI provides thread level {}, expected at least MPI_THREAD_SERIALIZED ({})", provided,
                   int(MPI_THREAD_SERIALIZED));
  return session;
}

bool all_reduce_pipelined(DType dtype, size_t bytes) {
  return dtype == DType::BF16 || dtype == DType::F16 || bytes >= kAllReducePipelineMinBytes;
}

bool all_equal(std::span<const int64_t> counts) {
  return std::adjacent_find(counts.begin(), counts.end(), std::not_equal_to<>()) == counts.end();
}

std::byte* bytes_of(const Tensor& t) { return static_cast<std::byte*>(t.data_ptr()); }

void require_cpu(const char* op, const Tensor& t) {
  check<DeviceError>(!t.defined() || t.device().is_cpu(), op, "the mpi backend moves CPU tensors only, got {}",
                     t.device());
}

void check_received(const MPI_Status& status, MPI_Datatype type, int expected, int src) {
  int received = 0;
  mpi_check(MPI_Get_count(&status, type, &received), "MPI_Get_count");
  check<CommError>(received == expected, "recv", "expected {} elements from rank {}, received {}", expected, src,
                   received);
}

// Runs an operation: `start(nullptr)` makes the blocking MPI calls, `start(&requests)` the
// non-blocking ones, whose Work then keeps the tensors `keep` and the `int_arrays` MPI reads until
// completion. The arrays are taken by reference so they stay put while `start` runs, then moved
// (their buffers do not move) into the Work. Blocking calls copy nothing.
template <typename Start, typename... Keep>
Work run(bool async, const Start& start, std::vector<std::vector<int>>&& int_arrays, RequestWork::Finish finish,
         const Keep&... keep) {
  if (!async) {
    start(nullptr);
    if (finish) finish({});
    return {};
  }
  std::vector<MPI_Request> requests;
  start(&requests);
  return Work(std::make_shared<RequestWork>(std::move(requests), std::vector<Tensor>{keep...}, std::move(int_arrays),
                                            std::move(finish)));
}

std::vector<int> ranks_in_world(MPI_Comm comm, int size) {
  MPI_Group group = MPI_GROUP_NULL;
  MPI_Group world = MPI_GROUP_NULL;
  mpi_check(MPI_Comm_group(comm, &group), "MPI_Comm_group");
  mpi_check(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group");
  std::vector<int> ranks(static_cast<size_t>(size));
  std::vector<int> in_world(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) ranks[size_t(r)] = r;
  const int rc = MPI_Group_translate_ranks(group, size, ranks.data(), world, in_world.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  mpi_check(rc, "MPI_Group_translate_ranks");
  return in_world;
}

MPI_Request* add_request(std::vector<MPI_Request>* requests) { return &requests->emplace_back(); }

class MpiBackend final : public CommBackend {
 public:
  MpiBackend(std::shared_ptr<MpiSession> session, MPI_Comm comm);
  ~MpiBackend() override;
  MpiBackend(const MpiBackend&) = delete;
  MpiBackend& operator=(const MpiBackend&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view name() const override { return "mpi"; }

  Work all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async) override;
  Work broadcast(const Tensor& buffer, int root, bool async) override;
  Work all_gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, bool async) override;
  Work reduce_scatter_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, ReduceOp op,
                        bool async) override;
  Work all_to_all_v(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, bool async) override;
  Work scatter_v(const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root, bool async) override;
  Work gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root, bool async) override;
  Work send(const Tensor& buffer, int dst, int tag, bool async) override;
  Work recv(const Tensor& buffer, int src, int tag, bool async) override;
  void barrier() override;
  std::shared_ptr<CommBackend> split(int color, int key) override;
  std::vector<int> world_ranks() const override { return world_ranks_; }
  int world_size() const override { return world_size_; }
  // The world's backend keeps the watchdogs' survey going while it lives.
  void keep_survey(std::shared_ptr<void> survey) { survey_ = std::move(survey); }
  bool exchange_blocks(const char* op, std::span<const ByteBlock> send, std::span<const ByteBlock> recv) override {
    return single_copy_->run(op, send, recv);
  }

 private:
  Work all_reduce_mpi(const Tensor& in, const Tensor& out, ReduceOp op, bool async);
  Work run_pipeline(ReducePlan plan, bool async);
  RequestWork::Finish divide_if_avg(ReduceOp op, const Tensor& t) const;

  std::shared_ptr<MpiSession> session_;
  std::shared_ptr<void> survey_;  // after session_: ends before MPI does
  MPI_Comm comm_;                 // the group's collectives and the caller's send/recv
  MPI_Comm algo_comm_;            // our algorithms' point-to-point messages, apart from the caller's tags
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;
  int world_size_ = 0;
  int tag_pairs_ = 1;  // pipelines use tags 2k, 2k+1 for k in [0, tag_pairs_)
  uint64_t pipelines_started_ = 0;
  std::unique_ptr<SingleCopyExchange> single_copy_;  // over comm_; probes on first use
};

MpiBackend::MpiBackend(std::shared_ptr<MpiSession> session, MPI_Comm comm)
    : session_(std::move(session)), comm_(comm), algo_comm_(MPI_COMM_NULL) {
  mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  mpi_check(MPI_Comm_dup(comm_, &algo_comm_), "MPI_Comm_dup");
  world_ranks_ = ranks_in_world(comm_, size_);
  mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &world_size_), "MPI_Comm_size");
  int* tag_ub = nullptr;
  int found = 0;
  mpi_check(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found), "MPI_Comm_get_attr");
  tag_pairs_ = (found != 0 ? *tag_ub : 32767) / 2;  // MPI guarantees a bound of at least 32767
  single_copy_ = std::make_unique<SingleCopyExchange>(comm_);
}

MpiBackend::~MpiBackend() {
  if (mpi_finalized()) return;
  for (MPI_Comm* comm : {&algo_comm_, &comm_}) {
    if (*comm == MPI_COMM_NULL) continue;
    int rc = MPI_Comm_free(comm);
    if (rc != MPI_SUCCESS) std::fprintf(stderr, "[MPI_Comm_free] failed with MPI error %d\n", rc);
  }
}

RequestWork::Finish MpiBackend::divide_if_avg(ReduceOp op, const Tensor& t) const {
  if (op != ReduceOp::Avg) return {};
  return [t, divisor = size_](std::span<const MPI_Status>) {
    divide_elements(t.dtype(), t.data_ptr(), t.numel(), divisor);
  };
}

// Every rank starts pipelines in the same order, so the k-th one gets the same tags everywhere.
Work MpiBackend::run_pipeline(ReducePlan plan, bool async) {
  const int tag = int(2 * (pipelines_started_++ % uint64_t(tag_pairs_)));
  std::shared_ptr<WorkImpl> work = start_reduce_pipeline(algo_comm_, tag, std::move(plan), kPipelineChunkBytes);
  if (async) return Work(std::move(work));
  work->wait();
  return {};
}

Work MpiBackend::all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async) {
  require_cpu("all_reduce", in);
  require_cpu("all_reduce", out);
  if (!all_reduce_pipelined(in.dtype(), in.nbytes())) return all_reduce_mpi(in, out, op, async);
  // Block i of the input is reduced on rank i into block i of out, then gathered into out.
  std::vector<int64_t> counts(size_t(size_), in.numel() / size_);
  for (int64_t i = 0; i < in.numel() % size_; ++i) counts[size_t(i)] += 1;
  ReducePlan plan{in.dtype(), op, bytes_of(in), nullptr, bytes_of(out), counts, displacements(counts), {in, out}};
  plan.out = plan.gathered + size_t(plan.displs[size_t(rank_)]) * in.element_size();
  return run_pipeline(std::move(plan), async);
}

Work MpiBackend::all_reduce_mpi(const Tensor& in, const Tensor& out, ReduceOp op, bool async) {
  const int count = mpi_int(in.numel(), "all_reduce", "in.numel()");
  const MPI_Datatype type = mpi_datatype(in.dtype());
  const void* send = in.data_ptr() == out.data_ptr() ? MPI_IN_PLACE : in.data_ptr();
  auto start = [&](std::vector<MPI_Request>* requests) {
    void* p = out.data_ptr();
    if (!requests) return mpi_check(MPI_Allreduce(send, p, count, type, mpi_reduce_op(op), comm_), "MPI_Allreduce");
    mpi_check(MPI_Iallreduce(send, p, count, type, mpi_reduce_op(op), comm_, add_request(requests)), "MPI_Iallreduce");
  };
  return run(async, start, {}, divide_if_avg(op, out), in, out);
}

Work MpiBackend::broadcast(const Tensor& buffer, int root, bool async) {
  require_cpu("broadcast", buffer);
  const MPI_Datatype type = mpi_datatype(buffer.dtype());
  auto start = [&](std::vector<MPI_Request>* requests) {
    for_each_piece(buffer.numel(), buffer.element_size(), [&](size_t offset, int count) {
      std::byte* p = bytes_of(buffer) + offset;
      if (!requests) return mpi_check(MPI_Bcast(p, count, type, root, comm_), "MPI_Bcast");
      mpi_check(MPI_Ibcast(p, count, type, root, comm_, add_request(requests)), "MPI_Ibcast");
    });
  };
  return run(async, start, {}, {}, buffer);
}

// Equal counts (the same array on every rank) use MPI_Allgather. MPI_IN_PLACE is
// only valid when every rank passes it, and whether the others alias is unknown here, so an `in`
// that is already its block of `out` is sent from a copy of that one block instead.
Work MpiBackend::all_gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, bool async) {
  require_cpu("all_gather_v", in);
  require_cpu("all_gather_v", out);
  std::vector<int64_t> displs = displacements(counts);
  std::vector<std::vector<int>> arrays{mpi_ints(counts, "all_gather_v", "counts"),
                                       mpi_ints(displs, "all_gather_v", "displacement")};
  const MPI_Datatype type = mpi_datatype(out.dtype());
  const bool aliased =
      in.numel() > 0 && in.data_ptr() == bytes_of(out) + size_t(displs[size_t(rank_)]) * out.element_size();
  const Tensor source = aliased ? in.clone() : in;
  const void* send = source.data_ptr();
  const int* c = arrays[0].data();
  const int* d = arrays[1].data();
  const int n = c[rank_];
  auto start = [&](std::vector<MPI_Request>* requests) {
    void* o = out.data_ptr();
    if (all_equal(counts)) {
      if (!requests) return mpi_check(MPI_Allgather(send, n, type, o, n, type, comm_), "MPI_Allgather");
      return mpi_check(MPI_Iallgather(send, n, type, o, n, type, comm_, add_request(requests)), "MPI_Iallgather");
    }
    if (!requests) return mpi_check(MPI_Allgatherv(send, n, type, o, c, d, type, comm_), "MPI_Allgatherv");
    mpi_check(MPI_Iallgatherv(send, n, type, o, c, d, type, comm_, add_request(requests)), "MPI_Iallgatherv");
  };
  return run(async, start, std::move(arrays), {}, source, out);
}

// `out` may be exactly this rank's block of `in`: the pipeline reduces in place.
Work MpiBackend::reduce_scatter_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, ReduceOp op,
                                  bool async) {
  require_cpu("reduce_scatter_v", in);
  require_cpu("reduce_scatter_v", out);
  return run_pipeline({.dtype = in.dtype(),
                       .op = op,
                       .in = bytes_of(in),
                       .out = bytes_of(out),
                       .counts = std::vector<int64_t>(counts.begin(), counts.end()),
                       .displs = displacements(counts),
                       .keep_alive = {in, out},
                       .stream_out = out.nbytes() >= kStreamMinBytes},
                      async);
}

// Always MPI_Alltoallv: whether every rank's counts are equal is not known here (a rank sees
// only its own row and column of the count matrix), and MPI_Alltoall on some ranks with
// MPI_Alltoallv on others would be erroneous. Measured, 2 and 4 ranks, 64 KiB..64 MiB: the two
// calls are within 5% of each other.
Work MpiBackend::all_to_all_v(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                              std::span<const int64_t> recv_counts, bool async) {
  require_cpu("all_to_all_v", in);
  require_cpu("all_to_all_v", out);
  std::vector<std::vector<int>> arrays{mpi_ints(send_counts, "all_to_all_v", "send_counts"),
                                       mpi_ints(displacements(send_counts), "all_to_all_v", "send displacement"),
                                       mpi_ints(recv_counts, "all_to_all_v", "recv_counts"),
                                       mpi_ints(displacements(recv_counts), "all_to_all_v", "recv displacement")};
  const MPI_Datatype type = mpi_datatype(in.dtype());
  const int* sc = arrays[0].data();
  const int* sd = arrays[1].data();
  const int* rc = arrays[2].data();
  const int* rd = arrays[3].data();
  auto start = [&](std::vector<MPI_Request>* requests) {
    const void* i = in.data_ptr();
    void* o = out.data_ptr();
    if (!requests) return mpi_check(MPI_Alltoallv(i, sc, sd, type, o, rc, rd, type, comm_), "MPI_Alltoallv");
    mpi_check(MPI_Ialltoallv(i, sc, sd, type, o, rc, rd, type, comm_, add_request(requests)), "MPI_Ialltoallv");
  };
  return run(async, start, std::move(arrays), {}, in, out);
}

// `in` is only defined (and read) on root; the dtype comes from `out`.
Work MpiBackend::scatter_v(const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root, bool async) {
  require_cpu("scatter_v", in);
  require_cpu("scatter_v", out);
  std::vector<std::vector<int>> arrays{mpi_ints(counts, "scatter_v", "counts"),
                                       mpi_ints(displacements(counts), "scatter_v", "displacement")};
  const MPI_Datatype type = mpi_datatype(out.dtype());
  const void* i = rank_ == root ? in.data_ptr() : nullptr;
  const int* c = arrays[0].data();
  const int* d = arrays[1].data();
  auto start = [&](std::vector<MPI_Request>* requests) {
    void* o = out.data_ptr();
    if (!requests) return mpi_check(MPI_Scatterv(i, c, d, type, o, c[rank_], type, root, comm_), "MPI_Scatterv");
    mpi_check(MPI_Iscatterv(i, c, d, type, o, c[rank_], type, root, comm_, add_request(requests)), "MPI_Iscatterv");
  };
  return run(async, start, std::move(arrays), {}, in, out);
}

// `out` is only defined (and written) on root; the dtype comes from `in`.
Work MpiBackend::gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root, bool async) {
  require_cpu("gather_v", in);
  require_cpu("gather_v", out);
  std::vector<std::vector<int>> arrays{mpi_ints(counts, "gather_v", "counts"),
                                       mpi_ints(displacements(counts), "gather_v", "displacement")};
  const MPI_Datatype type = mpi_datatype(in.dtype());
  void* o = rank_ == root ? out.data_ptr() : nullptr;
  const int* c = arrays[0].data();
  const int* d = arrays[1].data();
  auto start = [&](std::vector<MPI_Request>* requests) {
    const void* i = in.data_ptr();
    if (!requests) return mpi_check(MPI_Gatherv(i, c[rank_], type, o, c, d, type, root, comm_), "MPI_Gatherv");
    mpi_check(MPI_Igatherv(i, c[rank_], type, o, c, d, type, root, comm_, add_request(requests)), "MPI_Igatherv");
  };
  return run(async, start, std::move(arrays), {}, in, out);
}

Work MpiBackend::send(const Tensor& buffer, int dst, int tag, bool async) {
  require_cpu("send", buffer);
  const MPI_Datatype type = mpi_datatype(buffer.dtype());
  auto start = [&](std::vector<MPI_Request>* requests) {
    for_each_piece(buffer.numel(), buffer.element_size(), [&](size_t offset, int count) {
      const std::byte* p = bytes_of(buffer) + offset;
      if (!requests) return mpi_check(MPI_Send(p, count, type, dst, tag, comm_), "MPI_Send");
      mpi_check(MPI_Isend(p, count, type, dst, tag, comm_, add_request(requests)), "MPI_Isend");
    });
  };
  return run(async, start, {}, {}, buffer);
}

// MPI accepts a shorter message than the buffer; we do not, so every piece's size is checked
// (inline when blocking, from the statuses when the Work completes).
Work MpiBackend::recv(const Tensor& buffer, int src, int tag, bool async) {
  require_cpu("recv", buffer);
  const MPI_Datatype type = mpi_datatype(buffer.dtype());
  std::vector<int> expected;
  for_each_piece(buffer.numel(), buffer.element_size(), [&](size_t, int count) { expected.push_back(count); });
  auto start = [&](std::vector<MPI_Request>* requests) {
    for_each_piece(buffer.numel(), buffer.element_size(), [&](size_t offset, int count) {
      std::byte* p = bytes_of(buffer) + offset;
      if (requests) return mpi_check(MPI_Irecv(p, count, type, src, tag, comm_, add_request(requests)), "MPI_Irecv");
      MPI_Status status;
      mpi_check(MPI_Recv(p, count, type, src, tag, comm_, &status), "MPI_Recv");
      check_received(status, type, count, src);
    });
  };
  auto finish = [expected, type, src](std::span<const MPI_Status> statuses) {
    for (size_t i = 0; i < statuses.size(); ++i) check_received(statuses[i], type, expected[i], src);
  };
  return run(async, start, {}, finish, buffer);
}

void MpiBackend::barrier() { mpi_check(MPI_Barrier(comm_), "MPI_Barrier"); }

std::shared_ptr<CommBackend> MpiBackend::split(int color, int key) {
  MPI_Comm group = MPI_COMM_NULL;
  mpi_check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &group), "MPI_Comm_split");
  if (group == MPI_COMM_NULL) return nullptr;
  return std::make_shared<MpiBackend>(session_, group);
}

}  // namespace

bool mpi_is_available() { return !mpi_finalized(); }

std::shared_ptr<CommBackend> create_mpi_world(int* argc, char*** argv) {
  std::shared_ptr<MpiSession> session = start_mpi(argc, argv);
  MPI_Comm world = MPI_COMM_NULL;
  mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &world), "MPI_Comm_dup");
  auto backend = std::make_shared<MpiBackend>(std::move(session), world);
  backend->keep_survey(start_mpi_survey());
  return backend;
}

void mpi_abort_job(int code) {
  int initialized = 0;
  int finalized = 0;
  if (MPI_Initialized(&initialized) == MPI_SUCCESS && MPI_Finalized(&finalized) == MPI_SUCCESS && initialized != 0 &&
      finalized == 0) {
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  std::_Exit(code);
}

}  // namespace dtensor::detail
