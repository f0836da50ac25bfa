#include "nn/head_sharding.hpp"

#include "autograd/node.hpp"
#include "nn/strategy.hpp"
#include "tensor/error.hpp"
#include "tensor/ops.hpp"

#include <algorithm>

namespace dtensor::nn {

void check_heads(const AttentionHeads& heads, const std::string& what) {
  check<ValueError>(heads.num_heads > 0 && heads.num_kv_heads > 0 && heads.head_dim > 0, "heads",
                    "{}: num_heads ({}), num_kv_heads ({}) and head_dim ({}) must be positive", what, heads.num_heads,
                    heads.num_kv_heads, heads.head_dim);
  check<ValueError>(heads.num_heads % heads.num_kv_heads == 0, "heads",
                    "{}: num_heads ({}) must be a multiple of num_kv_heads ({}) for grouped-query attention", what,
                    heads.num_heads, heads.num_kv_heads);
}

void check_head_split(const AttentionHeads& heads, int64_t tp_size, const std::string& module) {
  check_heads(heads, module);
  check<ValueError>(tp_size >= 1, "tp_plan", "module '{}': TP size must be positive, got {}", module, tp_size);
  check<ValueError>(tp_size <= heads.num_heads, "tp_plan",
                    "module '{}': {} query heads ({} KV heads) cannot be split in whole heads over TP size {}; "
                    "every rank needs at least one query head (use a TP size of at most {})",
                    module, heads.num_heads, heads.num_kv_heads, tp_size, heads.num_heads);
}

RankHeads rank_heads(const AttentionHeads& heads, int64_t tp_size, int64_t tp_rank) {
  check_head_split(heads, tp_size, "attention");
  check<ValueError>(tp_rank >= 0 && tp_rank < tp_size, "heads", "TP rank {} is outside [0, {})", tp_rank, tp_size);
  // Balanced split: the first `extra` ranks take base + 1 heads.
  const int64_t base = heads.num_heads / tp_size, extra = heads.num_heads % tp_size;
  RankHeads out;
  out.query.begin = tp_rank * base + std::min(tp_rank, extra);
  out.query.end = out.query.begin + base + (tp_rank < extra ? 1 : 0);
  // The KV heads those query heads read (a rank holds at least one query head, so end > begin).
  const int64_t group = heads.group_size();
  out.kv.begin = out.query.begin / group;
  out.kv.end = (out.query.end - 1) / group + 1;
  return out;
}

bool heads_split_like_chunk(const AttentionHeads& heads, HeadRole role, int64_t tp_size) {
  const int64_t count = role == HeadRole::KeyValue ? heads.num_kv_heads : heads.num_heads;
  // Equal whole-head blocks are torch.chunk's blocks. For KV heads, kv % tp == 0 also makes the
  // query split even (num_heads is a multiple of num_kv_heads), so rule 2 gives the same blocks.
  return count % tp_size == 0;
}

bool kv_heads_shared(const AttentionHeads& heads, int64_t tp_size) {
  // Ranks hold ascending KV ranges, so a head is shared exactly when neighbours' ranges overlap.
  for (int64_t r = 1; r < tp_size; ++r) {
    if (rank_heads(heads, tp_size, r).kv.begin < rank_heads(heads, tp_size, r - 1).kv.end) return true;
  }
  return false;
}

Tensor sum_shared_head_gradients(const Tensor& weight, const AttentionHeads& heads, HeadRange kv,
                                 const DeviceMesh& tp_mesh) {
  if (!autograd::should_record(weight)) return weight;
  const int64_t d = heads.head_dim;
  check<ShapeError>(weight.dim() == 2 && weight.size(0) == kv.count() * d, "sum_shared_head_gradients",
                    "weight {} is not the rows of KV heads [{}, {}) of head_dim {}", shape_str(weight.shape()),
                    kv.begin, kv.end, d);
  Tensor out = autograd::detach(weight);
  return autograd::record(
      "sum_shared_head_gradients", {weight}, {}, out,
      [heads, kv, tp_mesh](const autograd::FunctionNode&, const Tensor& grad) {
        const int64_t d = heads.head_dim;
        Tensor all = Tensor::zeros({heads.num_kv_heads * d, grad.size(1)}, grad.dtype(), grad.device());
        all.narrow(0, kv.begin * d, kv.count() * d).copy_from(grad);
        Tensor summed = all_reduce_partial(all, tp_mesh);
        return autograd::Grads{summed.narrow(0, kv.begin * d, kv.count() * d).contiguous()};
      });
}

}  // namespace dtensor::nn
