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
      return {out, ctx.comm(m).all_gather_into(in, blocks, async)};
    }
    case StepKind::AllReduce: {
      Tensor out = Tensor::empty(in.shape(), in.dtype(), in.device());
      return {out, ctx.comm(m).all_reduce_into(in.contiguous(), out, from.reduce_op(), async)};
    }
    case StepKind::ReduceScatter: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto blocks = chunk_views(in, step.to.dim(), group);
      return {out, ctx.comm(m).reduce_scatter_from(blocks, out, from.reduce_op(), async)};
    }
    case StepKind::AllToAll: {
      Tensor out = Tensor::empty(out_block().shape, in.dtype(), in.device());
      auto send = chunk_views(in, step.to.dim(), group);
      auto recv = chunk_views(out, from.dim(), group);
      return {out, ctx.comm(m).all_to_all_blocks(send, recv, async)};
    }
  }
  fail<ValueError>("redistribute", "unknown step kind {}", int(step.kind));
}

}  // namespace dtensor
