// The DTensor embedding's weight gradient, with the weight's placements and no gather of the
// weight. The lookup runs with every rank holding all the ids wherever the weight is split over a
// mesh dim (ids are small), so on each rank the backward is one local scatter-add of the output
// gradient's rows into the weight block it holds (autograd/ops/gather.cpp's, restricted to the
// block's vocab rows). Per mesh dim, by the weight's placement:
//   S(0) vocab-parallel: the output was P(sum); the gradient, read as Replicate, gives every rank
//        all rows and each keeps those of its vocab range: S(0);
//   S(1): the output and its gradient are S(last); each rank scatters its columns: S(1);
//   R (or Partial, read as Replicate): each rank scatters the rows of its own ids, so where the ids
//        are split (or the gradient arrives P(sum)) the sums are P(sum), reduced once at the leaf.
#include "autograd/ops/grad_util.hpp"
#include "dtensor/autograd/node.hpp"
#include "dtensor/ops.hpp"
#include "dtensor/ops/dispatch.hpp"
#include "placements/sharding.hpp"

namespace dtensor::autograd {

namespace {

// The ids' layout for the lookup: replicated wherever the weight is not (so the dispatcher picks
// the vocab- or hidden-parallel rule with no movement of the weight), their own elsewhere.
Placements lookup_ids_layout(const Placements& weight, const Placements& ids) {
  Placements layout = ids;
  for (size_t m = 0; m < layout.size(); ++m) {
    if (!weight[m].is_replicate()) layout[m] = Replicate();
  }
  return layout;
}

// The layout each rank reads the output gradient in: all rows where the vocab is split, its
// columns where the hidden dim is, the ids' split where the weight is replicated, and a linear
// Partial kept there (a scatter-add is linear).
Placements output_grad_layout(const Placements& weight, const Placements& ids, const Placements& grad,
                              int64_t hidden_dim) {
  Placements layout(weight.size(), Replicate());
  for (size_t m = 0; m < layout.size(); ++m) {
    if (weight[m].is_shard(1)) {
      layout[m] = Shard(hidden_dim);
    } else if (!weight[m].is_shard() && ids[m].is_shard()) {
      layout[m] = ids[m];
    } else if (!weight[m].is_shard() && dtensor::detail::is_linear_partial(grad[m])) {
      layout[m] = grad[m];
    }
  }
  return layout;
}

// The weight gradient's placements: the weight's where it is split; where it is not, each rank's
// scatter-add is one summand when the gradient rows were split or partial.
Placements weight_grad_layout(const Placements& weight, const Placements& grad_layout) {
  Placements layout(weight.size(), Replicate());
  for (size_t m = 0; m < layout.size(); ++m) {
    if (weight[m].is_shard()) {
      layout[m] = weight[m];
    } else if (grad_layout[m].is_shard()) {
      layout[m] = Partial();
    } else if (grad_layout[m].is_partial()) {
      layout[m] = grad_layout[m];
    }
  }
  return layout;
}

}  // namespace

DTensor embedding(const DTensor& weight, const DTensor& ids) {
  if (!should_record(weight)) return dtensor::embedding(weight, ids);
  const Placements ids_layout = lookup_ids_layout(weight.placements(), ids.placements());
  const DTensor lookup_ids = ids.placements() == ids_layout ? ids : ids.redistribute(ids_layout);
  DTensor out = dtensor::embedding(weight, lookup_ids);
  // The weight's layout, not the weight: the graph need not keep a non-leaf weight alive.
  auto backward = [mesh = weight.mesh(), placements = weight.placements(), shape = weight.shape(),
                   dtype = weight.dtype(), device = weight.local_tensor().device(),
                   ids_layout](const DistributedNode& node, const DTensor& grad) {
    const Placements grad_layout = output_grad_layout(placements, ids_layout, grad.placements(), grad.dim() - 1);
    const Tensor rows = grad.redistribute(mesh, grad_layout).to_local();
    const Block block = local_block(shape, mesh.shape(), mesh.coordinate(), placements);
    const std::vector<int64_t> ids = node.saved(0).to_local().to_vector<int64_t>();
    const Tensor grad_rows = rows.reshape({int64_t(ids.size()), block.shape[1]});  // the block may have no columns
    const Tensor sums = detail::scatter_add_rows(grad_rows, ids, block.offset[0], block.shape[0], dtype, device);
    return DGrads{DTensor::from_local(sums, mesh, weight_grad_layout(placements, grad_layout), shape), DTensor()};
  };
  return record("embedding", {weight, ids}, {lookup_ids}, out, backward);
}

}  // namespace dtensor::autograd
