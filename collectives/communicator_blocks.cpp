// Communicator's block forms: collectives whose pieces are tensor views of any strides.
//
// Every block travels through the backend's all_to_all_w, which moves it where it lies: a gather
// of column blocks of a row-major matrix costs no staging copy. The choice never depends on this
// rank's blocks alone (ranks with uneven pieces would pick different MPI calls and deadlock), so
// callers whose blocks are flat on every rank use the flat collectives instead.
#include "collectives/comm_recorder.hpp"
#include "collectives/communicator_state.hpp"
#include "collectives/reduce_kernels.hpp"

#include <numeric>

namespace dtensor {

namespace {

uint64_t total_bytes(std::span<const Tensor> blocks) {
  uint64_t total = 0;
  for (const Tensor& b : blocks) total += b.nbytes();
  return total;
}

void check_blocks(const char* op, const char* name, std::span<const Tensor> blocks, int size, DType dtype) {
  check<ValueError>(blocks.size() == size_t(size), op, "{} has {} blocks, expected {} (one per rank)", name,
                    blocks.size(), size);
  for (size_t r = 0; r < blocks.size(); ++r) {
    check<ValueError>(blocks[r].defined(), op, "{}[{}] is an undefined tensor", name, r);
    check<DTypeError>(blocks[r].dtype() == dtype, op, "{}[{}] has dtype {}, expected {}", name, r,
                      blocks[r].dtype(), dtype);
  }
}

// Runs `then` once the inner operation has completed (the local reduction after an exchange).
class ThenWork final : public detail::WorkImpl {
 public:
  ThenWork(Work inner, std::function<void()> then) : inner_(std::move(inner)), then_(std::move(then)) {}
  bool test() override {
    if (!done_ && inner_.test()) finish();
    return done_;
  }
  void wait() override {
    if (done_) return;
    inner_.wait();
    finish();
  }

 private:
  void finish() {
    done_ = true;
    then_();
  }
  Work inner_;
  std::function<void()> then_;
  bool done_ = false;
};

Work then_run(Work inner, bool async, std::function<void()> then) {
  if (!async) {
    inner.wait();
    then();
    return {};
  }
  return Work(std::make_shared<ThenWork>(std::move(inner), std::move(then)));
}

}  // namespace

Work Communicator::State::all_gather_into(const Tensor& in, std::span<const Tensor> out_blocks, bool async) {
  const char* op = "all_gather_into";
  check<ValueError>(in.defined(), op, "in is an undefined tensor");
  check_blocks(op, "out_blocks", out_blocks, size(), in.dtype());
  check<ShapeError>(out_blocks[size_t(rank())].numel() == in.numel(), op,
                    "out_blocks[{}] (this rank's) has {} elements, expected {} (the elements of in)", rank(),
                    out_blocks[size_t(rank())].numel(), in.numel());
  count(CollectiveKind::AllGather, total_bytes(out_blocks));
  if (size() == 1) return out_blocks[0].copy_from(in.reshape(out_blocks[0].shape())), Work{};
  std::vector<Tensor> send(size_t(size()), in);
  return backend->all_to_all_w(send, out_blocks, async);
}

Work Communicator::State::reduce_scatter_from(std::span<const Tensor> in_blocks, const Tensor& out, ReduceOp op,
                                              bool async) {
  const char* name = "reduce_scatter_from";
  check<ValueError>(out.defined() && out.is_contiguous(), name, "out must be a defined contiguous tensor");
  check_blocks(name, "in_blocks", in_blocks, size(), out.dtype());
  check<DTypeError>(op != ReduceOp::Avg || is_floating(out.dtype()), name,
                    "reduce op avg needs a floating-point dtype, got {}", out.dtype());
  // Exchange my blocks into a scratch of size() contributions to my `out`, then reduce them in
  // rank order (bitwise the same order as the flat algorithm).
  count(CollectiveKind::ReduceScatter, total_bytes(in_blocks));
  const int64_t n = out.numel();
  Tensor scratch = Tensor::empty({int64_t(size()) * n}, out.dtype(), out.device());
  std::vector<Tensor> recv;
  for (int r = 0; r < size(); ++r) recv.push_back(scratch.narrow(0, r * n, n));
  Work exchange = size() == 1 ? (recv[0].copy_from(in_blocks[0].reshape({n})), Work{})
                              : backend->all_to_all_w(in_blocks, recv, async);
  auto reduce = [scratch, out, op, n, k = size()] {
    std::vector<const void*> srcs;
    for (int r = 0; r < k; ++r) srcs.push_back(static_cast<const std::byte*>(scratch.data_ptr()) + r * n * int64_t(scratch.element_size()));
    detail::reduce_blocks(out.dtype(), op, out.data_ptr(), srcs, n);
  };
  return then_run(std::move(exchange), async, reduce);
}

Work Communicator::State::all_to_all_blocks(std::span<const Tensor> send_blocks,
                                            std::span<const Tensor> recv_blocks, bool async) {
  const char* op = "all_to_all_blocks";
  check<ValueError>(!send_blocks.empty(), op, "send_blocks is empty, expected {} blocks", size());
  check_blocks(op, "send_blocks", send_blocks, size(), send_blocks[0].dtype());
  check_blocks(op, "recv_blocks", recv_blocks, size(), send_blocks[0].dtype());
  count(CollectiveKind::AllToAll, total_bytes(send_blocks));
  if (size() == 1) return recv_blocks[0].copy_from(send_blocks[0].reshape(recv_blocks[0].shape())), Work{};
  return backend->all_to_all_w(send_blocks, recv_blocks, async);
}

void Communicator::all_gather_into(const Tensor& in, std::span<const Tensor> out_blocks) {
  state("all_gather_into").all_gather_into(in, out_blocks, false);
}
Work Communicator::all_gather_into_async(const Tensor& in, std::span<const Tensor> out_blocks) {
  return state("all_gather_into").all_gather_into(in, out_blocks, true);
}
void Communicator::reduce_scatter_from(std::span<const Tensor> in_blocks, const Tensor& out, ReduceOp op) {
  state("reduce_scatter_from").reduce_scatter_from(in_blocks, out, op, false);
}
Work Communicator::reduce_scatter_from_async(std::span<const Tensor> in_blocks, const Tensor& out, ReduceOp op) {
  return state("reduce_scatter_from").reduce_scatter_from(in_blocks, out, op, true);
}
void Communicator::all_to_all_blocks(std::span<const Tensor> send_blocks, std::span<const Tensor> recv_blocks) {
  state("all_to_all_blocks").all_to_all_blocks(send_blocks, recv_blocks, false);
}
Work Communicator::all_to_all_blocks_async(std::span<const Tensor> send_blocks,
                                           std::span<const Tensor> recv_blocks) {
  return state("all_to_all_blocks").all_to_all_blocks(send_blocks, recv_blocks, true);
}

}  // namespace dtensor
