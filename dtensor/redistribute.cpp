// The redistribute executor: runs a RedistributePlan's steps on this rank's local block.
//
// Each step is prepared as (output tensor, one communicator call); collectives write straight
// into the output's blocks (strided views where the tensor dim is not the leading one), so no
// step stages a full-size copy. Blocking and async redistributes share the preparation; async
// starts each collective without waiting and advances when its Work completes.
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

// Whether cutting tensor dim d gives contiguous, adjacent pieces on EVERY rank of the step's
// group (all dims before d of size <= 1 under `placements`). Then the flat collective (and its
// tuned algorithm) runs; otherwise the block form moves strided pieces in place. Deciding from
// the whole group keeps every rank on the same MPI call even when uneven shards differ.
bool flat_on_group(const StepContext& ctx, size_t m, const Placements& placements, int64_t d) {
  std::vector<int64_t> coord = ctx.coordinate;
  for (coord[m] = 0; coord[m] < ctx.mesh_shape[m]; ++coord[m]) {
    Shape shape = local_block(ctx.global_shape, ctx.mesh_shape, coord, placements).shape;
    for (int64_t i = 0; i < d; ++i)
      if (shape[size_t(i)] > 1) return false;
  }
  return true;
}

// Calls the blocking form, or the async one, of a collective.
template <typename Blocking, typename Async>
Work call(bool async, Blocking&& blocking, Async&& start) {
  if (async) return start();
  blocking();
  return Work();
}

}  // namespace

StepRun start_step(const RedistributeStep& step, const Tensor& in, const StepContext& ctx, bool async) {
  const auto m = size_t(step.mesh_dim);
  const Placement& from = step.before[m];
  const int64_t group = ctx.mesh_shape[m];
  const int64_t coord = ctx.coordinate[m];
  auto out_block = [&] { return local_block(ctx.global_shape, ctx.mesh_shape, ctx.coordinate, after_step(step)); };

  switch (step.kind) {
    case StepKind::Relabel: return {in, Work()};
    case StepKind::LocalShard: {
      ChunkSpan span = chunk_span(in.size(step.to.dim()), group, coord);
      return {in.narrow(step.to.dim(), span.offset, span.size), Work()};
    }
    case StepKind::LocalPartial: {
      bool keeps_value = step.to.reduce_op() != ReduceOp::Sum || coord == 0;
      return {keeps_value ? in : Tensor::zeros(in.shape(), in.dtype(), in.device()), Work()};
    }
    case StepKind::AllGather: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto blocks = chunk_views(out, from.dim(), group);
      Communicator comm = ctx.comm(m);
      if (flat_on_group(ctx, m, after_step(step), from.dim())) {
        Tensor src = flat(in), dst = out.view({out.numel()});
        auto counts = numels(blocks);
        return {out, call(async, [&] { comm.all_gather_v(src, dst, counts); },
                          [&] { return comm.all_gather_v_async(src, dst, counts); })};
      }
      return {out, call(async, [&] { comm.all_gather_into(in, blocks); },
                        [&] { return comm.all_gather_into_async(in, blocks); })};
    }
    case StepKind::AllReduce: {
      Tensor out = Tensor::empty(in.shape(), in.dtype(), in.device());
      Communicator comm = ctx.comm(m);
      Tensor src = in.contiguous();
      ReduceOp op = from.reduce_op();
      return {out, call(async, [&] { comm.all_reduce(src, out, op); },
                        [&] { return comm.all_reduce_async(src, out, op); })};
    }
    case StepKind::ReduceScatter: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto blocks = chunk_views(in, step.to.dim(), group);
      Communicator comm = ctx.comm(m);
      ReduceOp op = from.reduce_op();
      if (flat_on_group(ctx, m, step.before, step.to.dim())) {
        Tensor src = flat(in), dst = out.view({out.numel()});
        auto counts = numels(blocks);
        return {out, call(async, [&] { comm.reduce_scatter_v(src, dst, counts, op); },
                          [&] { return comm.reduce_scatter_v_async(src, dst, counts, op); })};
      }
      return {out, call(async, [&] { comm.reduce_scatter_from(blocks, out, op); },
                        [&] { return comm.reduce_scatter_from_async(blocks, out, op); })};
    }
    case StepKind::AllToAll: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto send = chunk_views(in, step.to.dim(), group);
      auto recv = chunk_views(out, from.dim(), group);
      Communicator comm = ctx.comm(m);
      if (flat_on_group(ctx, m, step.before, step.to.dim()) && flat_on_group(ctx, m, after_step(step), from.dim())) {
        Tensor src = flat(in), dst = out.view({out.numel()});
        auto sc = numels(send), rc = numels(recv);
        return {out, call(async, [&] { comm.all_to_all_v(src, sc, dst, rc); },
                          [&] { return comm.all_to_all_v_async(src, sc, dst, rc); })};
      }
      return {out, call(async, [&] { comm.all_to_all_blocks(send, recv); },
                        [&] { return comm.all_to_all_blocks_async(send, recv); })};
    }
  }
  fail<ValueError>("redistribute", "unknown step kind {}", int(step.kind));
}

}  // namespace dtensor
