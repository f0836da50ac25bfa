// Communicator: a group of ranks and the collectives between them.
//
// A small value handle (copies share one group and one set of counters) over a backend that
// lives in its own folder (collectives/mpi/mpi_backend.cpp; collectives/nccl/nccl_backend.cpp, in
// the CUDA backend library). Buffers are contiguous Tensors; counts are in elements. Input and
// output dtypes must match. Every call is counted (calls and bytes, by kind) so tests and
// `explain` can see what ran. A group of size one never communicates.
//
// Bytes counted per call follow nccl-tests' "size": the buffer for all_reduce and broadcast,
// the full output for all_gather and gather, the full input for reduce_scatter, scatter and
// all_to_all, the message for send/recv.
#pragma once

#include "collectives/byte_block.hpp"
#include "collectives/reduce_op.hpp"
#include "collectives/work.hpp"
#include "tensor/tensor.hpp"

#include <array>
#include <memory>
#include <source_location>
#include <span>
#include <string_view>
#include <vector>

namespace dtensor {

enum class CollectiveKind : uint8_t {
  AllReduce,
  Broadcast,
  AllGather,
  ReduceScatter,
  AllToAll,
  Scatter,
  Gather,
  Send,
  Recv,
  Barrier
};
inline constexpr size_t kCollectiveKinds = 10;
std::string_view collective_name(CollectiveKind kind);

// How a collective into views (Communicator::all_gather_into_views, all_to_all_views) moves data.
enum class ViewPath : uint8_t {
  Auto,        // asked for: single copy where the transport can, staging elsewhere
  SingleCopy,  // each block copied once, straight from the sender's view into the receiver's
  Staging,     // the flat collective on a packed buffer, then an unpack; asked for: always this
};

// How a collective completes (see Communicator): Blocking, the default, or Async (torch's async_op=True).
enum class CommMode : uint8_t { Blocking, Async };

// The options of a collective into views: the path asked for, how it completes, and where to
// report the path taken (nullptr: not reported). Designated initializers read as keywords:
// comm.all_to_all_views(send, recv, {.path = ViewPath::Staging, .mode = CommMode::Async}).
struct ViewOptions {
  ViewPath path = ViewPath::Auto;
  CommMode mode = CommMode::Blocking;
  ViewPath* taken = nullptr;
};

struct CommStats {
  std::array<uint64_t, kCollectiveKinds> calls{};
  std::array<uint64_t, kCollectiveKinds> bytes{};

  uint64_t calls_of(CollectiveKind k) const { return calls[size_t(k)]; }
  uint64_t bytes_of(CollectiveKind k) const { return bytes[size_t(k)]; }
  uint64_t total_calls() const;
  uint64_t total_bytes() const;
};

namespace detail {
// What a transport implements. Arguments arrive validated: contiguous, matching dtypes and
// devices, counts of length size() that add up to the buffers. `async` false means the call
// completes before returning (the returned Work is then empty).
class CommBackend {
 public:
  virtual ~CommBackend() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view name() const = 0;

  // in == out (same data pointer) is the in-place form.
  virtual Work all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async) = 0;
  virtual Work broadcast(const Tensor& buffer, int root, bool async) = 0;
  virtual Work all_gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, bool async) = 0;
  virtual Work reduce_scatter_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, ReduceOp op,
                                bool async) = 0;
  virtual Work all_to_all_v(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                            std::span<const int64_t> recv_counts, bool async) = 0;
  virtual Work scatter_v(const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root,
                         bool async) = 0;
  virtual Work gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root, bool async) = 0;
  virtual Work send(const Tensor& buffer, int dst, int tag, bool async) = 0;
  virtual Work recv(const Tensor& buffer, int src, int tag, bool async) = 0;
  virtual void barrier() = 0;
  // nullptr when color < 0 (this rank joins no group).
  virtual std::shared_ptr<CommBackend> split(int color, int key) = 0;

  // Optional: the group's members as ranks of the world (the process group mpirun started), in
  // group rank order, and the world's size; empty / 0 where the transport cannot say. Timeout
  // messages name ranks with them (collectives/watchdog.hpp).
  virtual std::vector<int> world_ranks() const { return {}; }
  virtual int world_size() const { return 0; }

  // Optional: the single-copy path of the collectives into views. send[j] goes to rank j and
  // lands in rank j's recv[this rank]; every block is host memory and moves with one copy.
  // Returns false, having moved nothing, where the transport has no such path for this group
  // (the same answer on every rank); Communicator then stages through the flat collective.
  // Completes before returning; `op` names the caller's operation in errors.
  virtual bool exchange_blocks(const char* /*op*/, std::span<const ByteBlock> /*send*/,
                               std::span<const ByteBlock> /*recv*/) {
    return false;
  }
};
}  // namespace detail

class Communicator {
 public:
  Communicator() = default;  // belongs to no group: is_member() is false, every call throws
  explicit Communicator(std::shared_ptr<detail::CommBackend> backend);

  bool is_member() const { return state_ != nullptr; }
  int rank() const;
  int size() const;
  std::string_view backend_name() const;

  // Every collective is one call returning a Work, as c10d's ProcessGroup does. With the default
  // CommMode::Blocking it returns once the collective is done (the same blocking transport call,
  // no extra cost) and the Work is already complete: `comm.all_reduce(buf);` needs no wait(), so
  // Work is not [[nodiscard]]. CommMode::Async (torch.distributed's async_op=True) returns once
  // the collective is started; the buffers belong to it until wait() returns or test() says true.
  // An async Work dropped unwaited still completes (the MPI backend's handle waits in its
  // destructor; NCCL runs it in stream order), but reading its buffers before then is a race.

  // In place on every rank.
  Work all_reduce(const Tensor& buffer, ReduceOp op = ReduceOp::Sum, CommMode mode = CommMode::Blocking,
                  std::source_location where = std::source_location::current());
  // Out of place: `in` is left unchanged and `out` (same number of elements) gets the result.
  Work all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, CommMode mode = CommMode::Blocking,
                  std::source_location where = std::source_location::current());
  Work broadcast(const Tensor& buffer, int root, CommMode mode = CommMode::Blocking,
                 std::source_location where = std::source_location::current());

  // out = concatenation of every rank's `in` in rank order (flat; out.numel() == size * in.numel()).
  Work all_gather(const Tensor& in, const Tensor& out, CommMode mode = CommMode::Blocking,
                  std::source_location where = std::source_location::current());
  // Rank r contributes counts[r] elements.
  Work all_gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts,
                    CommMode mode = CommMode::Blocking, std::source_location where = std::source_location::current());

  // in holds size() equal blocks; rank r receives the reduction of everyone's block r.
  Work reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::Sum,
                      CommMode mode = CommMode::Blocking, std::source_location where = std::source_location::current());
  // Block r has counts[r] elements.
  Work reduce_scatter_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts,
                        ReduceOp op = ReduceOp::Sum, CommMode mode = CommMode::Blocking,
                        std::source_location where = std::source_location::current());

  // Block j of in goes to rank j; block i of out came from rank i.
  Work all_to_all(const Tensor& in, const Tensor& out, CommMode mode = CommMode::Blocking,
                  std::source_location where = std::source_location::current());
  Work all_to_all_v(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, CommMode mode = CommMode::Blocking,
                    std::source_location where = std::source_location::current());

  // Collectives into views: all_gather_v and all_to_all_v whose blocks are views of any strides
  // (the column blocks of a matrix, say), so that a redistribute needs no pack or unpack. Where
  // the transport can (MPI with every rank on one node: collectives/mpi/mpi_single_copy.hpp), each
  // block moves with one copy straight from the sender's view into the receiver's, as the flat
  // collective moves a flat buffer; elsewhere, with DTENSOR_SINGLE_COPY=0 in the environment or
  // with options.path == Staging, the flat collective runs on a packed copy and the result is
  // unpacked. Counted as all_gather / all_to_all with the flat call's bytes. Blocks must not share
  // elements; options.path must be the same on every rank. The path taken (the same on every
  // rank) is written to *options.taken where given; an async call may return an already-complete
  // Work (the single-copy path always completes before returning).
  //
  // out_blocks[r] receives rank r's `in` (so its numel is rank r's in.numel()).
  Work all_gather_into_views(const Tensor& in, std::span<const Tensor> out_blocks, ViewOptions options = {},
                             std::source_location where = std::source_location::current());
  // in_blocks[j] goes to rank j; out_blocks[i] receives rank i's in_blocks[this rank].
  Work all_to_all_views(std::span<const Tensor> in_blocks, std::span<const Tensor> out_blocks, ViewOptions options = {},
                        std::source_location where = std::source_location::current());

  // Root's in (size() blocks) is split to every rank's out; `in` is only read on root.
  Work scatter(const Tensor& in, const Tensor& out, int root, CommMode mode = CommMode::Blocking,
               std::source_location where = std::source_location::current());
  Work scatter_v(const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root,
                 CommMode mode = CommMode::Blocking, std::source_location where = std::source_location::current());
  // Every rank's in is concatenated into root's out; `out` is only written on root.
  Work gather(const Tensor& in, const Tensor& out, int root, CommMode mode = CommMode::Blocking,
              std::source_location where = std::source_location::current());
  Work gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root,
                CommMode mode = CommMode::Blocking, std::source_location where = std::source_location::current());

  Work send(const Tensor& buffer, int dst, int tag = 0, CommMode mode = CommMode::Blocking,
            std::source_location where = std::source_location::current());
  Work recv(const Tensor& buffer, int src, int tag = 0, CommMode mode = CommMode::Blocking,
            std::source_location where = std::source_location::current());

  // Always blocking: no transport here has a non-blocking barrier.
  void barrier(std::source_location where = std::source_location::current());

  // Identifies the group: equal for every copy of this handle (and for no other group).
  const void* id() const { return state_.get(); }

  // Collective over this group: ranks passing the same color form a new group ordered by key
  // (ties by rank). A negative color joins no group and gets a non-member Communicator.
  Communicator split(int color, int key) const;

  const CommStats& stats() const;
  void reset_stats();

 private:
  struct State;
  State& state(const char* op) const;
  // The same, noting where the public call in progress was made (DTENSOR_DEBUG=collectives).
  State& state_at(const char* op, const std::source_location& where) const;

  std::shared_ptr<State> state_;
};

}  // namespace dtensor
