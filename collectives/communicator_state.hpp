// Internal: the state behind every copy of one Communicator handle. communicator.cpp defines the
// flat collectives, communicator_views.cpp the collectives into views.
#pragma once

#include "collectives/call_check.hpp"
#include "collectives/communicator.hpp"
#include "collectives/watchdog.hpp"

#include <memory>
#include <source_location>
#include <span>

namespace dtensor {

// The backend's form of a CommMode.
inline bool is_async(CommMode mode) { return mode == CommMode::Async; }

// The group's backend and counters, shared by every copy of the handle. Each operation checks
// its arguments, counts itself, then short-circuits a group of one or hands over to the backend.
struct Communicator::State {
  std::shared_ptr<detail::CommBackend> backend;
  CommStats stats;

  int rank() const { return backend->rank(); }
  int size() const { return backend->size(); }
  void count(CollectiveKind kind, size_t bytes);

  uint64_t collectives_called = 0;                // the group's call number (the same on every rank)
  std::source_location site;                      // where the public call in progress was made
  const detail::GroupMembers* members = nullptr;  // for timeout messages; null in a group of one

  // Numbers the call and, with DTENSOR_DEBUG=collectives, compares it across the group first;
  // the returned scope watches the call's wait (DTENSOR_TIMEOUT) until it goes out of scope.
  [[nodiscard]] detail::WaitScope begin_call(const detail::CollectiveCall& call);
  [[nodiscard]] detail::WaitScope begin_point_to_point(const char* op, const Tensor& buffer, int peer) const;

  Work all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async);
  Work broadcast(const Tensor& buffer, int root, bool async);
  Work all_gather_v(const char* op, const Tensor& in, const Tensor& out, std::span<const int64_t> counts, bool async);
  Work reduce_scatter_v(const char* op, const Tensor& in, const Tensor& out, std::span<const int64_t> counts,
                        ReduceOp reduce, bool async);
  Work all_to_all_v(const char* op, const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, bool async);
  Work scatter_v(const char* op, const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root,
                 bool async);
  Work gather_v(const char* op, const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root,
                bool async);
  Work send(const Tensor& buffer, int dst, int tag, bool async);
  Work recv(const Tensor& buffer, int src, int tag, bool async);

  // communicator_views.cpp
  Work all_gather_into_views(const Tensor& in, std::span<const Tensor> out_blocks, ViewPath path, bool async,
                             ViewPath& taken);
  Work all_to_all_views(std::span<const Tensor> in_blocks, std::span<const Tensor> out_blocks, ViewPath path,
                        bool async, ViewPath& taken);
};

}  // namespace dtensor
