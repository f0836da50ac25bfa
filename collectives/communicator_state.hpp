// Communicator::State, shared by the files that implement Communicator (internal header).
#pragma once

#include "collectives/communicator.hpp"

namespace dtensor {

// The group's backend and counters, shared by every copy of the handle. Each operation checks
// its arguments, counts itself, then short-circuits a group of one or hands over to the backend.
struct Communicator::State {
  std::shared_ptr<detail::CommBackend> backend;
  CommStats stats;

  int rank() const { return backend->rank(); }
  int size() const { return backend->size(); }
  void count(CollectiveKind kind, size_t bytes);

  Work all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async);
  Work broadcast(const Tensor& buffer, int root, bool async);
  Work all_gather_v(const char* op, const Tensor& in, const Tensor& out, std::span<const int64_t> counts,
                    bool async);
  Work reduce_scatter_v(const char* op, const Tensor& in, const Tensor& out, std::span<const int64_t> counts,
                        ReduceOp reduce, bool async);
  Work all_to_all_v(const char* op, const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, bool async);
  void scatter_v(const char* op, const Tensor& in, std::span<const int64_t> counts, const Tensor& out,
                 int root);
  void gather_v(const char* op, const Tensor& in, const Tensor& out, std::span<const int64_t> counts,
                int root);
  Work send(const Tensor& buffer, int dst, int tag, bool async);
  Work recv(const Tensor& buffer, int src, int tag, bool async);
  // Block forms (communicator_blocks.cpp).
  Work all_gather_into(const Tensor& in, std::span<const Tensor> out_blocks, bool async);
  Work reduce_scatter_from(std::span<const Tensor> in_blocks, const Tensor& out, ReduceOp op, bool async);
  Work all_to_all_blocks(std::span<const Tensor> send_blocks, std::span<const Tensor> recv_blocks, bool async);
};


}  // namespace dtensor
