#include "collectives/communicator.hpp"

#include "collectives/comm_recorder.hpp"
#include "collectives/communicator_state.hpp"

#include <numeric>

namespace dtensor {

namespace {

// Argument checks. They only look at this rank's arguments, so a call that is wrong on every
// rank fails on every rank before any of them starts communicating.

void check_tensor(const char* op, const char* name, const Tensor& t) {
  check<ValueError>(t.defined(), op, "{} is an undefined tensor", name);
  if (!t.is_contiguous()) {  // (not check(): its arguments would be formatted on every call)
    fail<ValueError>(op, "{} must be contiguous, got shape {} with strides {}", name, shape_str(t.shape()),
                     shape_str(t.strides()));
  }
}

void check_same_kind(const char* op, const Tensor& in, const Tensor& out) {
  check<DTypeError>(out.dtype() == in.dtype(), op, "out has dtype {}, expected {} (the dtype of in)", out.dtype(),
                    in.dtype());
  check<DeviceError>(out.device() == in.device(), op, "out is on {}, expected {} (the device of in)", out.device(),
                     in.device());
}

void check_numel(const char* op, const char* name, const Tensor& t, int64_t expected) {
  if (t.numel() != expected) {
    fail<ShapeError>(op, "{} has {} elements (shape {}), expected {}", name, t.numel(), shape_str(t.shape()), expected);
  }
}

// Returns the sum of the counts.
int64_t check_counts(const char* op, const char* name, std::span<const int64_t> counts, int size) {
  check<ValueError>(counts.size() == size_t(size), op, "{} has {} entries, expected {} (one per rank)", name,
                    counts.size(), size);
  for (size_t i = 0; i < counts.size(); ++i) {
    check<ValueError>(counts[i] >= 0, op, "{}[{}] is {}, expected a count >= 0", name, i, counts[i]);
  }
  return std::accumulate(counts.begin(), counts.end(), int64_t(0));
}

void check_rank(const char* op, const char* name, int value, int size) {
  check<ValueError>(value >= 0 && value < size, op, "{} is {}, expected a rank in [0, {})", name, value, size);
}

void check_peer(const char* op, const char* name, int value, int rank, int size, int tag) {
  check_rank(op, name, value, size);
  check<ValueError>(value != rank, op, "{} is {}, this rank's own number; a rank cannot message itself", name, value);
  check<ValueError>(tag >= 0, op, "tag is {}, expected a tag >= 0", tag);
}

void check_reduce(const char* op, ReduceOp reduce, DType dtype) {
  check<DTypeError>(reduce != ReduceOp::Avg || is_floating(dtype), op,
                    "reduce op avg needs a floating-point dtype, got {}", dtype);
}

const std::byte* first_byte(const Tensor& t) { return static_cast<const std::byte*>(t.data_ptr()); }

// `out` overlapping `in` is refused (MPI would read what it already overwrote), except where it
// is exactly this rank's block of the other buffer: the in-place forms of all_gather and
// reduce_scatter. `offset` is that block's element offset, or -1 where no in-place form exists.
void check_overlap(const char* op, const Tensor& small, const Tensor& big, int64_t offset) {
  if (!small.defined() || !big.defined() || small.nbytes() == 0 || big.nbytes() == 0) return;
  const std::byte* s = first_byte(small);
  const std::byte* b = first_byte(big);
  if (s + small.nbytes() <= b || b + big.nbytes() <= s) return;
  check<ValueError>(offset >= 0 && s == b + size_t(offset) * big.element_size(), op,
                    "in and out overlap in memory; only out == this rank's block of in (or in == this "
                    "rank's block of out, for all_gather) may alias");
}

std::vector<int64_t> equal_counts(int size, int64_t count) { return std::vector<int64_t>(size_t(size), count); }

// Equal blocks: in splits into size blocks of in.numel() / size elements.
std::vector<int64_t> all_to_all_counts(const Tensor& in, int size) {
  check<ShapeError>(in.numel() % size == 0, "all_to_all",
                    "in has {} elements, expected a multiple of {} (one equal block per rank)", in.numel(), size);
  return equal_counts(size, in.numel() / size);
}

// Group of one: the result is the input.
void copy_elements(const Tensor& out, const Tensor& in) {
  if (in.numel() == 0 || in.data_ptr() == out.data_ptr()) return;
  out.view({out.numel()}).copy_from(in.view({in.numel()}));
}

}  // namespace

std::string_view collective_name(CollectiveKind kind) {
  static constexpr std::string_view kNames[kCollectiveKinds] = {
      "all_reduce", "broadcast", "all_gather", "reduce_scatter", "all_to_all",
      "scatter",    "gather",    "send",       "recv",           "barrier"};
  return size_t(kind) < kCollectiveKinds ? kNames[size_t(kind)] : "?";
}

uint64_t CommStats::total_calls() const { return std::accumulate(calls.begin(), calls.end(), uint64_t(0)); }
uint64_t CommStats::total_bytes() const { return std::accumulate(bytes.begin(), bytes.end(), uint64_t(0)); }

void Communicator::State::count(CollectiveKind kind, size_t bytes) {
  stats.calls[size_t(kind)] += 1;
  stats.bytes[size_t(kind)] += bytes;
  CommRecorder::notify({kind, uint64_t(bytes), size(), this});
}

detail::WaitScope Communicator::State::begin_call(const detail::CollectiveCall& call) {
  ++collectives_called;
  detail::PendingCall pending{.call = call, .sequence = collectives_called, .site = site, .group = members};
  pending.call.counts = {};  // the caller's array, gone by the time an async call is waited for
  if (members && detail::collective_checks_enabled()) {
    const detail::WaitScope exchange(pending);
    detail::check_same_collective(*backend, collectives_called, call, site);
  }
  return detail::WaitScope(pending);
}

detail::WaitScope Communicator::State::begin_point_to_point(const char* op, const Tensor& buffer, int peer) const {
  return detail::WaitScope({.call = {.op = op, .dtype = buffer.dtype(), .elements = buffer.numel()},
                            .peer = peer,
                            .site = site,
                            .group = members});
}

Work Communicator::State::all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async) {
  // The in-place form passes its buffer as both (undefined ones too, so errors name `buffer`).
  const bool in_place = &in == &out || (in.defined() && out.defined() && in.data_ptr() == out.data_ptr());
  check_tensor("all_reduce", in_place ? "buffer" : "in", in);
  if (!in_place) {
    check_tensor("all_reduce", "out", out);
    check_same_kind("all_reduce", in, out);
    check_numel("all_reduce", "out", out, in.numel());
    check_overlap("all_reduce", in, out, -1);
  }
  check_reduce("all_reduce", op, in.dtype());
  const detail::WaitScope wait = begin_call(
      {.op = "all_reduce", .dtype = in.dtype(), .elements = in.numel(), .reduce = int(op), .device = in.device().type});
  count(CollectiveKind::AllReduce, in.nbytes());
  if (size() == 1) return copy_elements(out, in), Work{};
  return wait.watch_later(backend->all_reduce(in, out, op, async), async);
}

Work Communicator::State::broadcast(const Tensor& buffer, int root, bool async) {
  check_tensor("broadcast", "buffer", buffer);
  check_rank("broadcast", "root", root, size());
  const detail::WaitScope wait = begin_call({.op = "broadcast",
                                             .dtype = buffer.dtype(),
                                             .elements = buffer.numel(),
                                             .root = root,
                                             .device = buffer.device().type});
  count(CollectiveKind::Broadcast, buffer.nbytes());
  if (size() == 1) return {};
  return wait.watch_later(backend->broadcast(buffer, root, async), async);
}

Work Communicator::State::all_gather_v(const char* op, const Tensor& in, const Tensor& out,
                                       std::span<const int64_t> counts, bool async) {
  check_tensor(op, "in", in);
  check_tensor(op, "out", out);
  check_same_kind(op, in, out);
  const int64_t total = check_counts(op, "counts", counts, size());
  check_numel(op, "in", in, counts[size_t(rank())]);
  check_numel(op, "out", out, total);
  check_overlap(op, in, out, std::accumulate(counts.begin(), counts.begin() + rank(), int64_t(0)));
  const detail::WaitScope wait =
      begin_call({.op = op, .dtype = in.dtype(), .elements = total, .counts = counts, .device = in.device().type});
  count(CollectiveKind::AllGather, out.nbytes());
  if (size() == 1) {
    copy_elements(out, in);
    return {};
  }
  return wait.watch_later(backend->all_gather_v(in, out, counts, async), async);
}

Work Communicator::State::reduce_scatter_v(const char* op, const Tensor& in, const Tensor& out,
                                           std::span<const int64_t> counts, ReduceOp reduce, bool async) {
  check_tensor(op, "in", in);
  check_tensor(op, "out", out);
  check_same_kind(op, in, out);
  check_reduce(op, reduce, in.dtype());
  const int64_t total = check_counts(op, "counts", counts, size());
  check_numel(op, "in", in, total);
  check_numel(op, "out", out, counts[size_t(rank())]);
  check_overlap(op, out, in, std::accumulate(counts.begin(), counts.begin() + rank(), int64_t(0)));
  const detail::WaitScope wait = begin_call({.op = op,
                                             .dtype = in.dtype(),
                                             .elements = total,
                                             .counts = counts,
                                             .reduce = int(reduce),
                                             .device = in.device().type});
  count(CollectiveKind::ReduceScatter, in.nbytes());
  if (size() == 1) {
    copy_elements(out, in);
    return {};
  }
  return wait.watch_later(backend->reduce_scatter_v(in, out, counts, reduce, async), async);
}

Work Communicator::State::all_to_all_v(const char* op, const Tensor& in, std::span<const int64_t> send_counts,
                                       const Tensor& out, std::span<const int64_t> recv_counts, bool async) {
  check_tensor(op, "in", in);
  check_tensor(op, "out", out);
  check_same_kind(op, in, out);
  check_numel(op, "in", in, check_counts(op, "send_counts", send_counts, size()));
  check_numel(op, "out", out, check_counts(op, "recv_counts", recv_counts, size()));
  check_overlap(op, in, out, -1);
  // Each rank's counts are its own: only the operation and dtype must agree.
  const detail::WaitScope wait = begin_call({.op = op, .dtype = in.dtype(), .device = in.device().type});
  count(CollectiveKind::AllToAll, in.nbytes());
  if (size() == 1) {
    copy_elements(out, in);
    return {};
  }
  return wait.watch_later(backend->all_to_all_v(in, send_counts, out, recv_counts, async), async);
}

// Only root's `in` is read, so only root checks it.
Work Communicator::State::scatter_v(const char* op, const Tensor& in, std::span<const int64_t> counts,
                                    const Tensor& out, int root, bool async) {
  check_tensor(op, "out", out);
  check_rank(op, "root", root, size());
  const int64_t total = check_counts(op, "counts", counts, size());
  check_numel(op, "out", out, counts[size_t(rank())]);
  if (rank() == root) {
    check_tensor(op, "in", in);
    check_same_kind(op, in, out);
    check_numel(op, "in", in, total);
    check_overlap(op, in, out, -1);
  }
  const detail::WaitScope wait = begin_call(
      {.op = op, .dtype = out.dtype(), .elements = total, .counts = counts, .root = root, .device = out.device().type});
  count(CollectiveKind::Scatter, size_t(total) * out.element_size());
  if (size() == 1) return copy_elements(out, in), Work{};
  return wait.watch_later(backend->scatter_v(rank() == root ? in : Tensor(), counts, out, root, async), async);
}

// Only root's `out` is written, so only root checks it.
Work Communicator::State::gather_v(const char* op, const Tensor& in, const Tensor& out, std::span<const int64_t> counts,
                                   int root, bool async) {
  check_tensor(op, "in", in);
  check_rank(op, "root", root, size());
  const int64_t total = check_counts(op, "counts", counts, size());
  check_numel(op, "in", in, counts[size_t(rank())]);
  if (rank() == root) {
    check_tensor(op, "out", out);
    check_same_kind(op, in, out);
    check_numel(op, "out", out, total);
    check_overlap(op, in, out, -1);
  }
  const detail::WaitScope wait = begin_call(
      {.op = op, .dtype = in.dtype(), .elements = total, .counts = counts, .root = root, .device = in.device().type});
  count(CollectiveKind::Gather, size_t(total) * in.element_size());
  if (size() == 1) return copy_elements(out, in), Work{};
  return wait.watch_later(backend->gather_v(in, rank() == root ? out : Tensor(), counts, root, async), async);
}

Work Communicator::State::send(const Tensor& buffer, int dst, int tag, bool async) {
  check_tensor("send", "buffer", buffer);
  check_peer("send", "dst", dst, rank(), size(), tag);
  count(CollectiveKind::Send, buffer.nbytes());
  const detail::WaitScope wait = begin_point_to_point("send", buffer, dst);
  return wait.watch_later(backend->send(buffer, dst, tag, async), async);
}

Work Communicator::State::recv(const Tensor& buffer, int src, int tag, bool async) {
  check_tensor("recv", "buffer", buffer);
  check_peer("recv", "src", src, rank(), size(), tag);
  count(CollectiveKind::Recv, buffer.nbytes());
  const detail::WaitScope wait = begin_point_to_point("recv", buffer, src);
  return wait.watch_later(backend->recv(buffer, src, tag, async), async);
}

// Communicator ---------------------------------------------------------------------------------

Communicator::Communicator(std::shared_ptr<detail::CommBackend> backend) {
  if (!backend) return;
  state_ = std::make_shared<State>();
  state_->backend = std::move(backend);
  if (state_->size() > 1)
    state_->members = &detail::intern_group(state_->backend->world_ranks(), state_->backend->world_size());
}

Communicator::State& Communicator::state(const char* op) const {
  check<CommError>(state_ != nullptr, op, "this rank is not a member of the communicator");
  return *state_;
}

Communicator::State& Communicator::state_at(const char* op, const std::source_location& where) const {
  State& s = state(op);
  s.site = where;
  return s;
}

int Communicator::rank() const { return state("rank").rank(); }
int Communicator::size() const { return state("size").size(); }
std::string_view Communicator::backend_name() const { return state("backend_name").backend->name(); }

Work Communicator::all_reduce(const Tensor& buffer, ReduceOp op, CommMode mode, std::source_location where) {
  return state_at("all_reduce", where).all_reduce(buffer, buffer, op, is_async(mode));
}
Work Communicator::all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, CommMode mode,
                              std::source_location where) {
  return state_at("all_reduce", where).all_reduce(in, out, op, is_async(mode));
}

Work Communicator::broadcast(const Tensor& buffer, int root, CommMode mode, std::source_location where) {
  return state_at("broadcast", where).broadcast(buffer, root, is_async(mode));
}

Work Communicator::all_gather(const Tensor& in, const Tensor& out, CommMode mode, std::source_location where) {
  State& s = state_at("all_gather", where);
  return s.all_gather_v("all_gather", in, out, equal_counts(s.size(), in.numel()), is_async(mode));
}
Work Communicator::all_gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, CommMode mode,
                                std::source_location where) {
  return state_at("all_gather_v", where).all_gather_v("all_gather_v", in, out, counts, is_async(mode));
}

Work Communicator::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op, CommMode mode,
                                  std::source_location where) {
  State& s = state_at("reduce_scatter", where);
  return s.reduce_scatter_v("reduce_scatter", in, out, equal_counts(s.size(), out.numel()), op, is_async(mode));
}
Work Communicator::reduce_scatter_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, ReduceOp op,
                                    CommMode mode, std::source_location where) {
  return state_at("reduce_scatter_v", where).reduce_scatter_v("reduce_scatter_v", in, out, counts, op, is_async(mode));
}

Work Communicator::all_to_all(const Tensor& in, const Tensor& out, CommMode mode, std::source_location where) {
  State& s = state_at("all_to_all", where);
  check_tensor("all_to_all", "in", in);
  std::vector<int64_t> counts = all_to_all_counts(in, s.size());
  return s.all_to_all_v("all_to_all", in, counts, out, counts, is_async(mode));
}
Work Communicator::all_to_all_v(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                                std::span<const int64_t> recv_counts, CommMode mode, std::source_location where) {
  return state_at("all_to_all_v", where)
      .all_to_all_v("all_to_all_v", in, send_counts, out, recv_counts, is_async(mode));
}

Work Communicator::scatter(const Tensor& in, const Tensor& out, int root, CommMode mode, std::source_location where) {
  State& s = state_at("scatter", where);
  check_tensor("scatter", "out", out);
  return s.scatter_v("scatter", in, equal_counts(s.size(), out.numel()), out, root, is_async(mode));
}
Work Communicator::scatter_v(const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root,
                             CommMode mode, std::source_location where) {
  return state_at("scatter_v", where).scatter_v("scatter_v", in, counts, out, root, is_async(mode));
}

Work Communicator::gather(const Tensor& in, const Tensor& out, int root, CommMode mode, std::source_location where) {
  State& s = state_at("gather", where);
  check_tensor("gather", "in", in);
  return s.gather_v("gather", in, out, equal_counts(s.size(), in.numel()), root, is_async(mode));
}
Work Communicator::gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root,
                            CommMode mode, std::source_location where) {
  return state_at("gather_v", where).gather_v("gather_v", in, out, counts, root, is_async(mode));
}

Work Communicator::send(const Tensor& buffer, int dst, int tag, CommMode mode, std::source_location where) {
  return state_at("send", where).send(buffer, dst, tag, is_async(mode));
}
Work Communicator::recv(const Tensor& buffer, int src, int tag, CommMode mode, std::source_location where) {
  return state_at("recv", where).recv(buffer, src, tag, is_async(mode));
}

void Communicator::barrier(std::source_location where) {
  State& s = state_at("barrier", where);
  const detail::WaitScope wait = s.begin_call({.op = "barrier"});
  s.count(CollectiveKind::Barrier, 0);
  if (s.size() > 1) s.backend->barrier();
}

Communicator Communicator::split(int color, int key) const {
  return Communicator(state("split").backend->split(color, key));
}

const CommStats& Communicator::stats() const { return state("stats").stats; }
void Communicator::reset_stats() { state("reset_stats").stats = CommStats{}; }

}  // namespace dtensor
