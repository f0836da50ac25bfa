// The redistribute executor: runs a RedistributePlan's steps on this rank's local block.
//
// Each step is prepared as (output tensor, one collective). A split along the leading dim is
// already flat: the flat collective reads the input and writes the output in place, no copy. A
// split along another dim (all_gather into column blocks, all_to_all between row and column
// blocks) runs the collective into views: one copy per block straight between the views where
// the transport can, else the flat collective plus one pack or unpack (Communicator decides;
// see communicator.hpp). reduce_scatter along a non-leading dim still packs its input once.
// Blocking and async redistributes run the same code: the step's collective gets the caller's
// CommMode, so an async redistribute starts it without waiting and advances when its Work completes.
#include "dtensor/redistribute.hpp"

namespace dtensor {

namespace {

// Views of `t` along dim d cut into the torch.chunk pieces of `parts`.
std::vector<Tensor> chunk_views(const Tensor& t, int64_t d, int64_t parts) {
  std::vector<Tensor> views;
  views.reserve(size_t(parts));
  for (int64_t r = 0; r < parts; ++r) {
    ChunkSpan span = chunk_span(t.size(d), parts, r);
    views.push_back(t.narrow(d, span.offset, span.size));
  }
  return views;
}

Placements after_step(const RedistributeStep& step) {
  Placements after = step.before;
  after[size_t(step.mesh_dim)] = step.to;
  return after;
}

std::vector<int64_t> numels(const std::vector<Tensor>& blocks) {
  std::vector<int64_t> out;
  for (const Tensor& b : blocks) out.push_back(b.numel());
  return out;
}

Tensor flat(const Tensor& t) { return t.contiguous().view({t.numel()}); }

// Whether the torch.chunk pieces of t along d are contiguous and follow each other: t is
// contiguous and every dim before d has size <= 1 (a split along the leading dim).
bool pieces_are_flat(const Tensor& t, int64_t d) {
  if (!t.is_contiguous()) return false;
  for (int64_t i = 0; i < d; ++i)
    if (t.size(i) > 1) return false;
  return true;
}

// Whether the pieces along d are flat (pieces_are_flat) for the block of EVERY rank of mesh dim
// m's group, so that the flat collective needs no pack or unpack anywhere. Decided from the
// placements, not from this rank's block: an uneven shard of size 1 is flat on one rank and not
// on the next, and every rank of the group must pick the same collective.
bool flat_on_every_rank(const StepContext& ctx, const Placements& placements, size_t m, int64_t d) {
  std::vector<int64_t> coordinate = ctx.coordinate;
  for (int64_t c = 0; c < ctx.mesh_shape[m]; ++c) {
    coordinate[m] = c;
    const Shape shape = local_block(ctx.global_shape, ctx.mesh_shape, coordinate, placements).shape;
    for (int64_t i = 0; i < d; ++i)
      if (shape[size_t(i)] > 1) return false;
  }
  return true;
}

// One flat buffer holding `blocks` one after another: the blocks themselves when they already
// lie that way, else a packed copy (the one copy a non-leading dim costs).
Tensor packed(const Tensor& whole, int64_t d, const std::vector<Tensor>& blocks) {
  if (pieces_are_flat(whole, d)) return flat(whole);
  Tensor out = Tensor::empty({whole.numel()}, whole.dtype(), whole.device());
  int64_t offset = 0;
  for (const Tensor& b : blocks) {
    out.narrow(0, offset, b.numel()).view(b.shape()).copy_from(b);
    offset += b.numel();
  }
  return out;
}

}  // namespace

StepRun start_step(const RedistributeStep& step, const Tensor& in, const StepContext& ctx, CommMode mode) {
  const auto m = size_t(step.mesh_dim);
  const Placement& from = step.before[m];
  const int64_t group = ctx.mesh_shape[m];
  const int64_t coord = ctx.coordinate[m];
  auto out_block = [&] { return local_block(ctx.global_shape, ctx.mesh_shape, ctx.coordinate, after_step(step)); };

  switch (step.kind) {
    case StepKind::Relabel:
      return {in, Work(), nullptr};
    case StepKind::LocalShard: {
      ChunkSpan span = chunk_span(in.size(step.to.dim()), group, coord);
      return {in.narrow(step.to.dim(), span.offset, span.size), Work(), nullptr};
    }
    case StepKind::LocalPartial: {
      bool keeps_value = step.to.reduce_op() != ReduceOp::Sum || coord == 0;
      return {keeps_value ? in : Tensor::zeros(in.shape(), in.dtype(), in.device()), Work(), nullptr};
    }
    case StepKind::AllGather: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto blocks = chunk_views(out, from.dim(), group);
      Communicator comm = ctx.comm(m);
      if (!flat_on_every_rank(ctx, after_step(step), m, from.dim())) {
        return {out, comm.all_gather_into_views(in, blocks, {.mode = mode}), nullptr};
      }
      Tensor src = flat(in), dst = flat(out);
      auto counts = numels(blocks);
      return {out, comm.all_gather_v(src, dst, counts, mode), nullptr};
    }
    case StepKind::AllReduce: {
      Tensor out = Tensor::empty(in.shape(), in.dtype(), in.device());
      Communicator comm = ctx.comm(m);
      Tensor src = in.contiguous();
      ReduceOp op = from.reduce_op();
      return {out, comm.all_reduce(src, out, op, mode), nullptr};
    }
    case StepKind::ReduceScatter: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto blocks = chunk_views(in, step.to.dim(), group);
      Tensor src = packed(in, step.to.dim(), blocks), dst = out.view({out.numel()});
      auto counts = numels(blocks);
      Communicator comm = ctx.comm(m);
      ReduceOp op = from.reduce_op();
      return {out, comm.reduce_scatter_v(src, dst, counts, op, mode), nullptr};
    }
    case StepKind::AllToAll: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto send = chunk_views(in, step.to.dim(), group);
      auto recv = chunk_views(out, from.dim(), group);
      Communicator comm = ctx.comm(m);
      if (!flat_on_every_rank(ctx, step.before, m, step.to.dim()) ||
          !flat_on_every_rank(ctx, after_step(step), m, from.dim())) {
        return {out, comm.all_to_all_views(send, recv, {.mode = mode}), nullptr};
      }
      Tensor src = flat(in), dst = flat(out);
      auto sc = numels(send), rc = numels(recv);
      return {out, comm.all_to_all_v(src, sc, dst, rc, mode), nullptr};
    }
  }
  fail<ValueError>("redistribute", "unknown step kind {}", int(step.kind));
}

}  // namespace dtensor
