#include "nn/head_sharding.hpp"

#include "tensor/error.hpp"

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

}  // namespace dtensor::nn
