// The layers of a Llama / Mixtral decoder, with Hugging Face's module and parameter names and
// transformers' numerics (LlamaRMSNorm, LlamaAttention, LlamaMLP, LlamaDecoderLayer; Mixtral's
// block_sparse_moe is nn::SparseMoE).
//
//   auto rotary = std::make_shared<RotaryContext>();
//   DecoderLayer layer(config, DType::F32, rotary);   // children input_layernorm, self_attn, ...
//   rotary->tables = rotary_tables(positions, config.head_dim, config.rope_theta, DType::F32);
//   nn::Value h = layer(x);                               // x [S, hidden], appends to the KV cache
//
// Under tensor parallelism the projections carry the strategies (colwise q/k/v: this rank's
// heads; rowwise o: the block's one all-reduce), attention runs on this rank's heads, and the
// KV cache holds this rank's KV heads.
#pragma once

#include "models/hf_config.hpp"
#include "models/kv_cache.hpp"
#include "nn/experts.hpp"
#include "nn/layers.hpp"
#include "tensor/attention.hpp"

namespace dtensor::models {

// The rotary tables of the positions the current forward call computes, shared by all layers.
struct RotaryContext {
  RotaryTables tables;
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
// rank's heads and the cached keys and values. Input: the whole sequence [S, hidden], plain.
class LlamaAttention : public nn::Module {
 public:
  LlamaAttention(const HFConfig& config, DType dtype, std::shared_ptr<const RotaryContext> rotary);
  KVCache& cache() { return cache_; }

 protected:
  nn::Value forward(const nn::Value& x) override;

 private:
  // The heads this rank computes, from the features its projections returned.
  nn::RankHeads heads_here(int64_t q_features, int64_t kv_features) const;

  nn::AttentionHeads heads_;
  std::shared_ptr<nn::Linear> q_proj_, k_proj_, v_proj_, o_proj_;
  std::shared_ptr<const RotaryContext> rotary_;
  KVCache cache_;
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
  DecoderLayer(const HFConfig& config, DType dtype, std::shared_ptr<const RotaryContext> rotary);
  LlamaAttention& attention() { return *self_attn_; }

 protected:
  nn::Value forward(const nn::Value& x) override;

 private:
  std::shared_ptr<LlamaRMSNorm> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<LlamaAttention> self_attn_;
  std::shared_ptr<nn::Module> ffn_;
};

}  // namespace dtensor::models
