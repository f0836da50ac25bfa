// The collectives into views (see communicator.hpp): checks, counting, the group of one, the
// backend's single-copy path, and the staging path (flat collective + pack / unpack) that runs
// wherever the backend has none.
#include "collectives/communicator_state.hpp"

#include <functional>
#include <numeric>

namespace dtensor {

namespace {

using detail::ByteBlock;

void check_blocks(const char* op, const char* name, std::span<const Tensor> blocks, int size, const Tensor& like) {
  check<ValueError>(blocks.size() == size_t(size), op, "{} has {} views, expected {} (one per rank)", name,
                    blocks.size(), size);
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Tensor& b = blocks[i];
    check<ValueError>(b.defined(), op, "{}[{}] is an undefined tensor", name, i);
    check<DTypeError>(b.dtype() == like.dtype(), op, "{}[{}] has dtype {}, expected {}", name, i, b.dtype(),
                      like.dtype());
    check<DeviceError>(b.device() == like.device(), op, "{}[{}] is on {}, expected {}", name, i, b.device(),
                       like.device());
  }
}

// [first byte, one past the last byte] a view can touch (strides are never negative).
std::pair<const std::byte*, const std::byte*> extent(const Tensor& t) {
  const auto* first = static_cast<const std::byte*>(t.data_ptr());
  int64_t last = 0;
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  return {first, first + (last + 1) * int64_t(t.element_size())};
}

// A receiving view must not share memory with a sending one: a peer could still be reading it
// while this rank writes. (Receiving views may interleave, as column blocks do, and are not
// compared with each other.)
void check_apart(const char* op, std::span<const Tensor> sends, std::span<const Tensor> recvs) {
  for (const Tensor& s : sends) {
    if (s.numel() == 0) continue;
    auto [s0, s1] = extent(s);
    for (const Tensor& r : recvs) {
      if (r.numel() == 0 || !r.shares_storage(s)) continue;
      auto [r0, r1] = extent(r);
      check<ValueError>(s1 <= r0 || r1 <= s0, op, "a sending view and a receiving view overlap in memory");
    }
  }
}

std::vector<int64_t> numels(std::span<const Tensor> blocks) {
  std::vector<int64_t> out;
  for (const Tensor& b : blocks) out.push_back(b.numel());
  return out;
}

int64_t total_bytes(std::span<const Tensor> blocks) {
  return std::accumulate(blocks.begin(), blocks.end(), int64_t(0),
                         [](int64_t sum, const Tensor& b) { return sum + int64_t(b.nbytes()); });
}

bool all_cpu(std::span<const Tensor> blocks) {
  return std::all_of(blocks.begin(), blocks.end(), [](const Tensor& b) { return b.device().is_cpu(); });
}

// The sending views as ByteBlocks; a view that is none is sent from a contiguous copy (kept).
struct SendBlocks {
  std::vector<ByteBlock> blocks;
  std::vector<Tensor> copies;

  explicit SendBlocks(std::span<const Tensor> views) {
    for (const Tensor& v : views) {
      std::optional<ByteBlock> b = detail::byte_block_of(v);
      if (!b) b = detail::byte_block_of(copies.emplace_back(v.contiguous()));
      blocks.push_back(*b);
    }
  }
};

// The receiving views as ByteBlocks; a view that is none receives into a contiguous stand-in
// that unpack() copies into it afterwards.
struct RecvBlocks {
  std::vector<ByteBlock> blocks;
  std::vector<std::pair<Tensor, Tensor>> stand_ins;  // (view, stand-in)

  explicit RecvBlocks(std::span<const Tensor> views) {
    for (const Tensor& v : views) {
      std::optional<ByteBlock> b = detail::byte_block_of(v);
      if (!b) {
        Tensor s = Tensor::empty(v.shape(), v.dtype(), v.device());
        stand_ins.emplace_back(v, s);
        b = detail::byte_block_of(s);
      }
      blocks.push_back(*b);
    }
  }
  void unpack() const {
    for (const auto& [view, stand_in] : stand_ins) view.copy_from(stand_in);
  }
};

bool run_single_copy(detail::CommBackend& backend, const char* op, std::span<const Tensor> sends,
                     std::span<const Tensor> recvs) {
  SendBlocks send(sends);
  RecvBlocks recv(recvs);
  if (!backend.exchange_blocks(op, send.blocks, recv.blocks)) return false;
  recv.unpack();
  return true;
}

// The views one after another in one flat buffer: the view itself when it is the only one and
// contiguous, else a packed copy.
Tensor packed(std::span<const Tensor> views) {
  if (views.size() == 1 && views[0].is_contiguous()) return views[0].view({views[0].numel()});
  Tensor out =
      Tensor::empty({total_bytes(views) / int64_t(views[0].element_size())}, views[0].dtype(), views[0].device());
  int64_t offset = 0;
  for (const Tensor& v : views) {
    out.narrow(0, offset, v.numel()).view(v.shape()).copy_from(v);
    offset += v.numel();
  }
  return out;
}

// Copies consecutive pieces of `flat` into the views.
std::function<void()> unpacker(const Tensor& flat, std::span<const Tensor> views) {
  return [flat, views = std::vector<Tensor>(views.begin(), views.end())] {
    int64_t offset = 0;
    for (const Tensor& v : views) {
      v.copy_from(flat.narrow(0, offset, v.numel()).view(v.shape()));
      offset += v.numel();
    }
  };
}

// A staged collective in flight: the flat collective's Work, then the unpack, once.
class UnpackAfter final : public detail::WorkImpl {
 public:
  UnpackAfter(Work flat, std::function<void()> unpack) : flat_(std::move(flat)), unpack_(std::move(unpack)) {}
  bool test() override {
    if (!flat_.test()) return false;
    finish();
    return true;
  }
  void wait() override {
    flat_.wait();
    finish();
  }

 private:
  void finish() {
    if (unpack_) std::exchange(unpack_, nullptr)();
  }
  Work flat_;
  std::function<void()> unpack_;
};

Work then_unpack(Work flat, std::function<void()> unpack, bool async) {
  if (!async) {
    flat.wait();
    unpack();
    return {};
  }
  return Work(std::make_shared<UnpackAfter>(std::move(flat), std::move(unpack)));
}

void copy_views(std::span<const Tensor> to, std::span<const Tensor> from) {
  for (size_t i = 0; i < to.size(); ++i) to[i].copy_from(from[i]);
}

}  // namespace

Work Communicator::State::all_gather_into_views(const Tensor& in, std::span<const Tensor> out_blocks, ViewPath path,
                                                bool async, ViewPath& taken) {
  const char* op = "all_gather_into_views";
  check<ValueError>(in.defined(), op, "in is an undefined tensor");
  check_blocks(op, "out_blocks", out_blocks, size(), in);
  const Tensor& mine = out_blocks[size_t(rank())];
  check<ShapeError>(mine.numel() == in.numel(), op,
                    "out_blocks[{}] (this rank's) has {} elements, expected {} (in.numel())", rank(), mine.numel(),
                    in.numel());
  check_apart(op, std::span(&in, 1), out_blocks);
  const detail::WaitScope wait = begin_call({.op = op, .dtype = in.dtype(), .device = in.device().type});
  count(CollectiveKind::AllGather, size_t(total_bytes(out_blocks)));
  taken = ViewPath::SingleCopy;
  if (size() == 1) return mine.copy_from(in), Work{};
  std::vector<Tensor> sends(size_t(size()), in);
  if (path != ViewPath::Staging && in.device().is_cpu() && all_cpu(out_blocks) &&
      run_single_copy(*backend, op, sends, out_blocks)) {
    return {};
  }
  taken = ViewPath::Staging;
  Tensor src = packed(std::span(&in, 1));
  Tensor staging = Tensor::empty({total_bytes(out_blocks) / int64_t(in.element_size())}, in.dtype(), in.device());
  std::vector<int64_t> counts = numels(out_blocks);
  return wait.watch_later(
      then_unpack(backend->all_gather_v(src, staging, counts, async), unpacker(staging, out_blocks), async), async);
}

Work Communicator::State::all_to_all_views(std::span<const Tensor> in_blocks, std::span<const Tensor> out_blocks,
                                           ViewPath path, bool async, ViewPath& taken) {
  const char* op = "all_to_all_views";
  check<ValueError>(!in_blocks.empty() && in_blocks[0].defined(), op, "in_blocks[0] is missing or undefined");
  check_blocks(op, "in_blocks", in_blocks, size(), in_blocks[0]);
  check_blocks(op, "out_blocks", out_blocks, size(), in_blocks[0]);
  const auto me = size_t(rank());
  check<ShapeError>(out_blocks[me].numel() == in_blocks[me].numel(), op,
                    "out_blocks[{}] has {} elements, expected {} (in_blocks[{}], this rank's own block)", me,
                    out_blocks[me].numel(), in_blocks[me].numel(), me);
  check_apart(op, in_blocks, out_blocks);
  const detail::WaitScope wait =
      begin_call({.op = op, .dtype = in_blocks[0].dtype(), .device = in_blocks[0].device().type});
  count(CollectiveKind::AllToAll, size_t(total_bytes(in_blocks)));
  taken = ViewPath::SingleCopy;
  if (size() == 1) return copy_views(out_blocks, in_blocks), Work{};
  if (path != ViewPath::Staging && all_cpu(in_blocks) && all_cpu(out_blocks) &&
      run_single_copy(*backend, op, in_blocks, out_blocks)) {
    return {};
  }
  taken = ViewPath::Staging;
  Tensor src = packed(in_blocks);
  const Tensor& like = in_blocks[0];
  Tensor staging = Tensor::empty({total_bytes(out_blocks) / int64_t(like.element_size())}, like.dtype(), like.device());
  std::vector<int64_t> send_counts = numels(in_blocks);
  std::vector<int64_t> recv_counts = numels(out_blocks);
  return wait.watch_later(then_unpack(backend->all_to_all_v(src, send_counts, staging, recv_counts, async),
                                      unpacker(staging, out_blocks), async),
                          async);
}

Work Communicator::all_gather_into_views(const Tensor& in, std::span<const Tensor> out_blocks, ViewOptions options,
                                         std::source_location where) {
  ViewPath taken{};
  Work work = state_at("all_gather_into_views", where)
                  .all_gather_into_views(in, out_blocks, options.path, is_async(options.mode), taken);
  if (options.taken) *options.taken = taken;
  return work;
}

Work Communicator::all_to_all_views(std::span<const Tensor> in_blocks, std::span<const Tensor> out_blocks,
                                    ViewOptions options, std::source_location where) {
  ViewPath taken{};
  Work work = state_at("all_to_all_views", where)
                  .all_to_all_views(in_blocks, out_blocks, options.path, is_async(options.mode), taken);
  if (options.taken) *options.taken = taken;
  return work;
}

}  // namespace dtensor
