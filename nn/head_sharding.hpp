// Which attention heads a tensor-parallel rank holds (docs/design.md section 5: "Attention projections
// are sharded in whole heads").
//
// An attention block has `num_heads` query heads and `num_kv_heads` key/value heads of
// `head_dim` each; with grouped-query attention query head h reads KV head h / (num_heads /
// num_kv_heads). Its projections are Linears that declare their heads (Linear::set_heads):
// q_proj's output rows are query heads, k_proj's and v_proj's output rows are KV heads, o_proj's
// input columns are query heads. colwise / rowwise on such a Linear split whole heads:
//
// 1. Query heads: a balanced split, the first ranks taking one more head when the TP size does
//    not divide them (6 heads on 4 ranks: 2, 2, 1, 1 = heads [0,2) [2,4) [4,5) [5,6)). When it
//    divides them this is torch.chunk of the rows, so the parameters stay DTensors with Shard
//    placements; otherwise no Shard describes the split (torch.chunk of 6 heads on 4 ranks would
//    give 2, 2, 2, 0), and the parameters are plain local tensors.
// 2. KV heads follow the query heads: a rank holds exactly the KV heads its query heads read,
//    [first query head / group, last query head / group]. That one rule covers every case:
//    - KV heads divisible by the TP size: equal blocks, torch.chunk again (8 q / 4 kv on 4 ranks:
//      rank r holds q 2r, 2r+1 and kv r).
//    - TP size a multiple of the KV heads: each KV head replicated on TP / kv ranks, rank r holds
//      KV head r / (TP / kv) (8 q / 2 kv on 4 ranks: kv 0, 0, 1, 1).
//    - uneven query split: a KV head whose group straddles two ranks is read by both (6 q / 3 kv on
//      4 ranks: q [0,2) [2,4) [4,5) [5,6) hold kv 0, 1, 2, 2; 8 q / 4 kv on 3 ranks: q [0,3) [3,6)
//      [6,8) hold kv [0,2) [1,3) [3,4)). KV projections are then computed redundantly on the ranks
//      sharing a head, never communicated.
//    KV parameters that are not torch.chunk blocks are plain local tensors.
// 3. Refused (ValueError naming the module, the heads and the TP size, before anything loads): a
//    TP size larger than the query heads, which would leave a rank without a whole head. A head
//    configuration that is wrong in itself (num_heads not a multiple of num_kv_heads, a Linear
//    whose rows or columns are not heads x head_dim) is refused by Linear::set_heads.
//
// With the query heads split, an attention block's score / softmax / value product runs on this
// rank's heads alone; o_proj (rowwise) turns the per-rank partial outputs into the full output
// with the block's one all-reduce.
#pragma once

#include "mesh/device_mesh.hpp"
#include "tensor/tensor.hpp"

#include <cstdint>
#include <string>

namespace dtensor::nn {

struct AttentionHeads {
  int64_t num_heads = 0;     // query heads
  int64_t num_kv_heads = 0;  // key/value heads (== num_heads without grouped-query attention)
  int64_t head_dim = 0;

  int64_t group_size() const { return num_heads / num_kv_heads; }  // query heads per KV head
  bool operator==(const AttentionHeads&) const = default;
};

// What a projection's heads are: the rows (q, k/v) or the columns (o) of its weight [out, in].
enum class HeadRole { Query, KeyValue, Output };

// Heads [begin, end).
struct HeadRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t count() const { return end - begin; }
  bool operator==(const HeadRange&) const = default;
};

// The heads one rank of a TP group of `tp_size` holds (rules 1 and 2 above).
struct RankHeads {
  HeadRange query;
  HeadRange kv;

  // The heads of `role` (Query and Output: query heads; KeyValue: KV heads).
  HeadRange of(HeadRole role) const { return role == HeadRole::KeyValue ? kv : query; }
};

// ValueError naming `what` when the configuration itself is inconsistent (non-positive sizes,
// num_heads not a multiple of num_kv_heads).
void check_heads(const AttentionHeads& heads, const std::string& what);

// ValueError naming `module` when `tp_size` ranks cannot each hold whole heads (rule 3).
void check_head_split(const AttentionHeads& heads, int64_t tp_size, const std::string& module);

// The heads of rank `tp_rank`; the same ValueError as check_head_split (named "attention").
RankHeads rank_heads(const AttentionHeads& heads, int64_t tp_size, int64_t tp_rank);

// Whether every rank's heads of `role` are exactly its torch.chunk block (so a DTensor Shard
// describes the split): the head count of that role divides by the TP size.
bool heads_split_like_chunk(const AttentionHeads& heads, HeadRole role, int64_t tp_size);

// Whether some KV head is held by more than one of `tp_size` ranks (rule 2's replicated and
// straddling heads). The same answer on every rank.
bool kv_heads_shared(const AttentionHeads& heads, int64_t tp_size);

// Training with shared KV heads. A rank's k / v projection weight (its KV heads `kv`, rows of
// head_dim each) receives from its own query heads only part of the gradient of a head that other
// ranks hold too. This op is the identity on `weight` going forward and records, when it requires
// a gradient, a backward that sums each KV head's gradient over the ranks holding it: one
// all-reduce over `tp_mesh` of every KV head's rows, zeros where a rank holds none. So every
// replica of a head gets the same whole gradient and stays equal to the others after an update.
// Collective in the backward: every rank of the mesh must run it.
Tensor sum_shared_head_gradients(const Tensor& weight, const AttentionHeads& heads, HeadRange kv,
                                 const DeviceMesh& tp_mesh);

}  // namespace dtensor::nn
