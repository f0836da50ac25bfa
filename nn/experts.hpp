// Mixture-of-experts layers: the experts container with packed weights, and the sparse MoE block
// (router, top-k, experts) as in Mixtral.
//
// Experts holds, for E experts with hidden size H and intermediate size I,
//   gate_up [E, 2*I, H]   each expert's gate rows then up rows (the packed [gate; up] layout)
//   down    [E, H, I]
// and computes, for each token t and each of its k routed experts e with weight w,
//   out[t] += w * down_e(silu(gate_e(x_t)) * up_e(x_t)).
// Mixtral checkpoints store w1 (gate), w3 (up), w2 (down) per expert; packing them at load time
// is the model loader's job. Here the checkpoint names are the packed ones.
//
// Strategies: `local` (every rank holds all experts whole) or `moe_tp_experts` (gate_up and down
// sharded on the intermediate dim, per packed part; the block's output reduced once).
//
//   auto moe = std::make_shared<SparseMoE>(/*experts*/ 8, /*top_k*/ 2, /*hidden*/ 4096, /*inter*/ 14336);
//   Value y = (*moe)(x);   // x [T, H] or [B, S, H]
#pragma once

#include "nn/layers.hpp"

namespace dtensor::nn {

class Experts : public Module {
 public:
  Experts(int64_t num_experts, int64_t hidden, int64_t intermediate, DType dtype = DType::F32);
  int64_t num_experts() const { return num_experts_; }
  int64_t hidden() const { return hidden_; }

  // hidden [T, H]; expert_ids [T, k] integer ids in [0, E) (distinct per token, as top-k gives);
  // routing_weights [T, k] (applied in f32, f64 for f64 hidden states; the k weighted outputs of a
  // token are summed there and rounded once to hidden's dtype). Returns [T, H]. The installed
  // strategy prepares `hidden` and the result (Module::call_with_strategy).
  // ValueError for an id out of range, ShapeError for shapes that do not fit.
  Value route(const Value& hidden, const Tensor& expert_ids, const Tensor& routing_weights);

 protected:
  // Refused: experts need the routing; call route(), or use SparseMoE.
  Value forward(const Value& x) override;

 private:
  // The computation on this rank's (plain) weights; with intermediate-sharded weights the result
  // is this rank's partial sum.
  Tensor compute(const Tensor& hidden, const Tensor& expert_ids, const Tensor& routing_weights) const;
  // routing_weights, whose gradient is all-reduced over the strategy's mesh in the backward when
  // this rank's weights are a slice of the intermediate dim.
  Tensor partial_sum_gradient(const Tensor& routing_weights) const;

  int64_t num_experts_, hidden_;
};

// router (Linear H -> E, no bias) -> softmax over experts -> top-k -> the k weights renormalised to
// sum to 1 (Mixtral) -> Experts. Children: "gate" and "experts". Trains as Mixtral does: the
// router's gradient flows through the top-k weights and their renormalisation (the choice of
// experts itself has none); with the experts' intermediate dim split over ranks, the routing
// weights' partial gradient is all-reduced, so the replicated router gets the whole gradient.
class SparseMoE : public Module {
 public:
  SparseMoE(int64_t num_experts, int64_t top_k, int64_t hidden, int64_t intermediate, DType dtype = DType::F32);

 protected:
  Value forward(const Value& x) override;  // x [..., H] plain -> [..., H]

 private:
  int64_t top_k_;
  std::shared_ptr<Linear> gate_;
  std::shared_ptr<Experts> experts_;
};

}  // namespace dtensor::nn
