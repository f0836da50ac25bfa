// The layers of a Llama / Mixtral decoder, with Hugging Face's module and parameter names and
// transformers' numerics (LlamaRMSNorm, LlamaAttention, LlamaMLP, LlamaDecoderLayer; Mixtral's
// block_sparse_moe is nn::SparseMoE).
//
// Norms and MLPs take one tensor (nn::Module::forward). Attention and the decoder layer also take
// the positions of the call's tokens, their rotary tables and the layer's KV cache (if any), as explicit
// LayerInputs, as transformers' LlamaDecoderLayer.forward(hidden_states, position_ids,
// past_key_values, position_embeddings=(cos, sin)) and Megatron's TransformerLayer.forward(
// hidden_states, attention_mask, rotary_pos_emb, inference_params) do; they read no other state.
//
//   DecoderLayer layer(config, DType::F32);            // children input_layernorm, self_attn, ...
//   KVCache cache;                                     // the caller owns the layer's cache
//   RotaryTables rotary = rotary_tables({0, 1, 2}, config.head_dim, config.rope_theta, DType::F32);
//   nn::Value h = layer(x, {/*first_position=*/0, rotary, &cache});  // x [3, hidden]; appends 3 positions
//
// Training runs a batch without a cache: B sequences of T tokens as [B * T, hidden] rows, every
// sequence at positions 0 .. T-1 (the rotary tables hold B * T rows), LayerInputs{0, rotary,
// nullptr, B}. Every op records through the autograd:: forms when a parameter or the input requires
// a gradient, and costs one test per input when nothing does.
//
// Under tensor parallelism the projections carry the strategies (colwise q/k/v: this rank's
// heads; rowwise o: the block's one all-reduce), attention runs on this rank's heads, worked out
// from the head sharding when the plan is applied, and the KV cache holds this rank's KV heads.
#pragma once

#include "models/hf_config.hpp"
#include "models/kv_cache.hpp"
#include "nn/experts.hpp"
#include "nn/layers.hpp"
#include "tensor/attention.hpp"

namespace dtensor::models {

// What a decoder layer and its attention take besides the hidden states, for the S tokens of one
// forward call: `sequences` sequences of S / sequences tokens each, one after the other, each from
// first_position on. The model computes the rotary tables once per call and passes every layer
// the same positions and its own cache. Attention is causal within each sequence: its token i, at
// position first_position + i, sees the cached positions and the sequence's tokens up to itself;
// there is no other mask (no padding).
struct LayerInputs {
  int64_t first_position;      // each sequence's first position; a cache holds exactly the ones before
  const RotaryTables& rotary;  // cos / sin [S, head_dim] of every token's position
  KVCache* cache;              // this layer's keys and values (this rank's KV heads), S appended; or none
  int64_t sequences = 1;       // more than one only without a cache (training batches)
};

// transformers' LlamaRMSNorm: the normalisation in f32, rounded to the input's dtype, THEN
// multiplied by the weight (nn::RMSNorm multiplies before rounding: the same for f32, one
// rounding apart for bf16). Rows are independent, so a sequence-split input is normalised locally.
class LlamaRMSNorm : public nn::Module {
 public:
  LlamaRMSNorm(int64_t hidden, double eps, DType dtype);

 protected:
  nn::Value forward(const nn::Value& x) override;

 private:
  double eps_;
};

// q/k/v/o projections (no bias), rotary on q and k, grouped-query causal attention over this
// rank's heads and the cached keys and values.
class LlamaAttention : public nn::Module {
 public:
  LlamaAttention(const HFConfig& config, DType dtype);

  // hidden [S, hidden_size], the whole sequences (a DTensor is gathered) -> [S, hidden_size] as
  // o_proj's strategy leaves it. ValueError when S differs from the rotary tables' rows, does not
  // split into `sequences` equal sequences, or a cache does not end just before first_position
  // (or is given with more than one sequence). The cache records no gradient.
  nn::Value operator()(const nn::Value& hidden, const LayerInputs& inputs);

  // The heads this rank computes: all of them, or under a plan whose q/k/v projections leave
  // their output split (colwise), this rank's share by nn::rank_heads.
  const nn::RankHeads& heads_here() const { return heads_here_; }
  // Sets heads_here from the strategies on q_proj, k_proj and v_proj (ValueError naming the
  // module when they do not split alike).
  void plan_applied(const std::string& name, const DeviceMesh& tp_mesh) override;

 private:
  Tensor attend(const Tensor& hidden, const LayerInputs& inputs);
  Tensor project_kv(nn::Linear& projection, const Tensor& hidden);
  Tensor attention_per_sequence(const Tensor& q, const Tensor& k, const Tensor& v, int64_t sequences) const;
  void check_inputs(int64_t tokens, const LayerInputs& inputs) const;
  void check_projection_widths(const Tensor& q, const Tensor& k, const Tensor& v) const;
  void set_heads_here(const nn::RankHeads& heads);

  nn::AttentionHeads heads_;
  nn::RankHeads heads_here_;
  std::vector<int64_t> kv_head_of_;  // per query head of this rank: its KV head among this rank's
  // Set when the plan leaves some KV head on several ranks (more ranks than KV heads, or an uneven
  // query split): those projections' weight gradients are summed over the ranks holding each head.
  bool kv_heads_shared_ = false;
  DeviceMesh tp_mesh_;
  std::shared_ptr<nn::Linear> q_proj_, k_proj_, v_proj_, o_proj_;
};

// down(silu(gate(x)) * up(x)), no biases. Input: the whole sequence, plain.
class LlamaMLP : public nn::Module {
 public:
  LlamaMLP(int64_t hidden, int64_t intermediate, DType dtype);

 protected:
  nn::Value forward(const nn::Value& x) override;

 private:
  std::shared_ptr<nn::Linear> gate_proj_, up_proj_, down_proj_;
};

// x + attn(norm(x)), then + ffn(norm(.)); the ffn is "mlp" (Llama) or "block_sparse_moe" (Mixtral).
class DecoderLayer : public nn::Module {
 public:
  DecoderLayer(const HFConfig& config, DType dtype);

  // hidden [S, hidden_size]: plain, or a DTensor split on the sequence (sequence parallelism),
  // returned in the same layout.
  nn::Value operator()(const nn::Value& hidden, const LayerInputs& inputs);

  // With checkpointing on, a forward that would record keeps only the layer's input and
  // recomputes the layer in the backward (models/activation_checkpoint.hpp): the same gradients,
  // bit for bit, for one more forward of the layer.
  void set_checkpointing(bool on) { checkpointing_ = on; }
  bool checkpointing() const { return checkpointing_; }

 private:
  nn::Value residual_blocks(const nn::Value& x, const LayerInputs& inputs);

  bool checkpointing_ = false;

  std::shared_ptr<LlamaRMSNorm> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<LlamaAttention> self_attn_;
  std::shared_ptr<nn::Module> ffn_;
};

}  // namespace dtensor::models
