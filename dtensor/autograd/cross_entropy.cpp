// Cross-entropy of DTensor logits [..., vocab] that never gathers them (Megatron's vocab-parallel
// cross-entropy). Each rank runs the steps of autograd/ops/vocab_block.hpp on its block; over the
// mesh dims that shard the vocab, three all-reduces combine the row statistics: the row max (max),
// the sum of exp(x - max) (sum) and the label's logit, which only the rank holding its column
// contributes (sum). Over mesh dims that shard the rows, one all-reduce sums the rows' losses. The
// count of tokens needs none: the labels are whole on every rank. The backward is local:
// (softmax - one_hot) * grad / count on each rank's block, laid out as the logits.
#include "autograd/ops/vocab_block.hpp"
#include "dtensor/autograd/node.hpp"
#include "placements/sharding.hpp"

namespace dtensor::autograd {

namespace {

constexpr const char* kOp = "cross_entropy";

// The layout the loss reads the logits in: Partial reduced first (the loss is not linear).
Placements partials_reduced(Placements placements) {
  for (Placement& p : placements) {
    if (p.is_partial()) p = Replicate();
  }
  return placements;
}

// Reduces `t` in place over every mesh dim (of more than one rank) whose placement is
// Shard(vocab_dim) (when `vocab`) or a Shard of another dim (otherwise), one after the other:
// together they cover the ranks whose blocks differ along those dims.
void all_reduce_over(const Tensor& t, ReduceOp op, const DeviceMesh& mesh, const Placements& layout, int64_t vocab_dim,
                     bool vocab) {
  for (size_t m = 0; m < layout.size(); ++m) {
    const bool split = layout[m].is_shard() && mesh.size(int64_t(m)) > 1;
    if (split && layout[m].is_shard(vocab_dim) == vocab) mesh.comm(int64_t(m)).all_reduce(t, op);
  }
}

// The labels of the rows of `block` (its leading dims), from the whole labels.
Tensor block_labels(const Tensor& labels, const Block& block) {
  Tensor rows = labels;
  for (int64_t d = 0; d < labels.dim(); ++d) rows = rows.narrow(d, block.offset[size_t(d)], block.shape[size_t(d)]);
  return rows.contiguous();
}

// What the backward needs, freed with the graph's saved tensors.
struct SavedBlock {
  Tensor logits;  // this rank's block, partials reduced
  Tensor labels;  // its rows' labels
  Tensor lse;     // its rows' global log-sum-exp
};

}  // namespace

DTensor cross_entropy(const DTensor& logits, const Tensor& labels, int64_t ignore_index) {
  check<ValueError>(logits.to_local().defined(), kOp, "logits is undefined");
  Tensor whole_labels = detail::checked_labels(kOp, logits.shape(), logits.dtype(), labels, ignore_index);
  const int64_t count = detail::counted_labels(whole_labels, ignore_index);
  const DeviceMesh& mesh = logits.mesh();
  const Placements layout = partials_reduced(logits.placements());
  // Untracked (detached, local_tensor): this op records its own node over logits.
  const DTensor ready = layout == logits.placements() ? logits : detach(logits).redistribute(layout);
  const int64_t vocab_dim = logits.dim() - 1;
  const Block block = local_block(logits.shape(), mesh.shape(), mesh.coordinate(), layout);
  const int64_t offset = block.offset.back();
  auto saved = std::make_shared<SavedBlock>(SavedBlock{ready.local_tensor(), block_labels(whole_labels, block), {}});
  detail::VocabBlock rows(saved->logits, saved->labels, ignore_index, offset);

  Tensor max = rows.row_max();
  all_reduce_over(max, ReduceOp::Max, mesh, layout, vocab_dim, /*vocab=*/true);
  Tensor sum_exp = rows.sum_exp(max);
  all_reduce_over(sum_exp, ReduceOp::Sum, mesh, layout, vocab_dim, true);
  Tensor target = rows.target();
  all_reduce_over(target, ReduceOp::Sum, mesh, layout, vocab_dim, true);
  saved->lse = detail::log_sum_exp(max, sum_exp);
  Tensor total = rows.loss_sum(saved->lse, target);
  all_reduce_over(total, ReduceOp::Sum, mesh, layout, vocab_dim, /*vocab=*/false);

  const Placements replicated(layout.size(), Replicate());
  DTensor out = DTensor::from_local(detail::mean_loss(total, count, logits.dtype()), mesh, replicated, Shape{});
  if (!should_record(logits)) return out;
  auto backward = [mesh, layout, replicated, offset, ignore_index, count, shape = logits.shape()](
                      const DistributedNode& node, const Gradients& grads) {
    const SavedBlock& saved = node.held<SavedBlock>();
    const Tensor grad = as_dtensor(grads[0], kOp).redistribute(mesh, replicated).to_local();
    detail::VocabBlock rows(saved.logits, saved.labels, ignore_index, offset);
    const Tensor block_grad = rows.gradient(saved.lse, grad, count);
    return Gradients{as_gradient(DTensor::from_local(block_grad, mesh, layout, shape))};
  };
  auto node = std::make_shared<DistributedNode>(kOp, std::vector<Edge>{gradient_edge(logits)},
                                                std::vector<InputSpec>{spec_of(logits)}, DGrads{}, 1, backward);
  node->hold(saved);
  attach(node, out, 0);
  return out;
}

}  // namespace dtensor::autograd
