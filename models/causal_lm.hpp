// Llama and Mixtral causal language models built from nn/, loaded from Hugging Face checkpoint
// directories (config.json + safetensors), whole or sharded over a tensor-parallel mesh.
//
// The module tree carries Hugging Face's names, so checkpoint tensors map 1:1 (Mixtral's
// per-expert w1 / w3 / w2 are packed into experts.gate_up / experts.down at load time, box by box):
//   model.embed_tokens  model.layers.{i}.input_layernorm  model.layers.{i}.self_attn.{q,k,v,o}_proj
//   model.layers.{i}.post_attention_layernorm  model.layers.{i}.mlp.{gate,up,down}_proj (Llama)
//   model.layers.{i}.block_sparse_moe.{gate,experts} (Mixtral)  model.norm  lm_head
// Numerics follow transformers' LlamaForCausalLM / MixtralForCausalLM: see models/decoder_layers.hpp.
//
//   DeviceMesh tp = DeviceMesh::from_world({world().size()});
//   auto model = models::load_sharded("tiny-llama/", tp,
//                                     models::auto_tp_plan(models::load_hf_config("tiny-llama/")), DType::F32);
//   models::Generation g = models::generate_greedy(*model, {1, 15, 7}, /*max_new_tokens=*/8);
//   Tensor next = model->forward_tokens({g.new_ids.back()});   // continues from the cache
//   model->to(Device::cuda(0));                                // parameters and caches move to the GPU
//
// Training (docs/design.md section 13): mark the parameters, run a batch, backpropagate the loss.
//   model->requires_grad_();
//   model->set_activation_checkpointing(true);                 // optional: recompute layers in backward
//   nn::Value logits = model->training_logits(ids);            // ids [B, T] -> [B * T, vocab]
//   DTensor loss = autograd::cross_entropy(logits.dtensor(), labels);   // vocab-parallel under colwise lm_head
//   autograd::backward(loss);
#pragma once

#include "io/checkpoint.hpp"
#include "models/decoder_layers.hpp"
#include "nn/tp_plan.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dtensor::models {

class CausalLM : public nn::Module {
 public:
  // Llama or Mixtral by config.architecture (ValueError naming it otherwise). Parameters are
  // declared in `dtype` and stay undefined until loaded.
  CausalLM(const HFConfig& config, DType dtype);

  const HFConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }

  // Runs `ids` (positions cache_length() ..) through the model, appending to the KV cache.
  // Returns logits [ids.size(), vocab] as a plain f32 tensor on device() holding the full vocab on
  // every rank.
  // ValueError naming the id when one is outside [0, vocab), or when ids is empty.
  Tensor forward_tokens(const std::vector<int64_t>& ids);

  // Training: ids [B, T] (i64 or i32), each row its own sequence at positions 0 .. T-1, no KV cache
  // (the cache is neither read nor changed). Returns logits of global shape [B * T, vocab] in the
  // model's dtype, row b * T + t for token t of sequence b: a plain tensor when lm_head's output is
  // whole, a DTensor sharded on the vocab dim (Shard(-1)) when its strategy leaves the vocab split
  // (colwise): never gathered, for a vocab-parallel loss. Records a graph when a parameter requires
  // a gradient; with activation checkpointing, decoder layers keep only their inputs.
  // ValueError naming [row, column] for an id outside [0, vocab); ShapeError / DTypeError for ids
  // that are not a non-empty 2-D integer tensor.
  nn::Value training_logits(const Tensor& ids);

  // Checkpoints every decoder layer (DecoderLayer::set_checkpointing): a recorded forward keeps
  // only each layer's input, and the backward recomputes the layer. Off by default.
  void set_activation_checkpointing(bool on);
  bool activation_checkpointing() const { return checkpointing_; }

  // With tie_word_embeddings the embedding's weight is the one parameter both lookups and lm_head
  // use, so its gradient sums both uses; lm_head's own "weight" stays unloaded and is marked
  // borrowed, so named_parameters lists the tensor once, as model.embed_tokens.weight (the
  // checkpoint's name), as torch lists a tied parameter once. The loaders call this. ValueError
  // naming both when the plan laid the two out so that one cannot serve as the other (plain
  // tensors of different shapes); DTensors of other placements are redistributed for lm_head.
  // Nothing without tie_word_embeddings or once tied. Quantized (models/quant.hpp): lm_head shares
  // the embedding's quantized table when the plan gives both the same block of it.
  void tie_word_embeddings();

  // Where the parameters are (the embedding's): the CPU after loading, until to(Device) moves the
  // model. Ids and rotary tables go there; logits come back there.
  Device device() const;
  int64_t cache_length() const { return cache_length_; }
  void reset_cache();
  // Room for `tokens` positions in every layer's cache, so later steps append without reallocating.
  void reserve_cache(int64_t tokens);

 protected:
  // ids [S] (i64) at positions cache_length() .. -> logits [S, vocab] in the model's dtype, as
  // lm_head's strategy leaves them. Computes the positions' rotary tables once and passes them,
  // with each layer's own KV cache, to every layer (LayerInputs).
  nn::Value forward(const nn::Value& ids) override;

 private:
  // tokens [S] through embedding, layers and norm, then lm_head; `cache`: append to the KV caches.
  nn::Value run(const Tensor& tokens, const RotaryTables& rotary, bool cache, int64_t sequences);
  // lm_head on the final hidden states (the embedding's weight when tied).
  nn::Value head(const nn::Value& hidden);
  void tie_quantized_embeddings();

  HFConfig config_;
  DType dtype_;
  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::vector<std::shared_ptr<DecoderLayer>> layers_;
  std::shared_ptr<LlamaRMSNorm> norm_;
  std::shared_ptr<nn::Linear> lm_head_;
  std::vector<KVCache> caches_;  // one per layer, as transformers' past_key_values
  int64_t cache_length_ = 0;     // the positions every cache holds
  bool checkpointing_ = false;
  bool tied_ = false;
  std::optional<Placements> tied_head_placements_;  // lm_head's placements when tied DTensors differ
};

// The model's built-in ("auto") plan: q/k/v colwise, o rowwise (whole heads per rank), MLP
// gate/up colwise and down rowwise, Mixtral experts moe_tp_experts (router replicated), the
// embedding vocab-parallel (rowwise), lm_head colwise_rep (full-vocab logits on every rank).
// One all-reduce per attention block and per MLP / MoE block, plus the embedding's.
nn::TpPlan auto_tp_plan(const HFConfig& config);

// The auto plan with sequence parallelism: the residual stream stays split on the sequence dim,
// norms run on their rows (sequence_parallel), each block gathers the sequence once and o_proj /
// down_proj reduce-scatter back (rowwise_to_sequence); the embedding reduce-scatters too. Mixtral's
// MoE block all-reduces and keeps this rank's rows. As JSON:
//   {"model.embed_tokens": "rowwise_to_sequence", "model.layers.*.input_layernorm": "sequence_parallel",
//    "model.layers.*.self_attn.o_proj": "rowwise_to_sequence", "model.norm": "sequence_parallel", ...}
nn::TpPlan sequence_parallel_tp_plan(const HFConfig& config);

// The checkpoint's tensors under the model's parameter names: lm_head.weight is
// model.embed_tokens.weight with tie_word_embeddings; Mixtral's experts.gate_up [E, 2I, H] and
// experts.down [E, H, I] read each requested box from the per-expert experts.{e}.w1 / w3 / w2,
// never the whole packed tensor. A missing tensor is a ValueError, a per-expert tensor of the
// wrong shape a ShapeError, each naming the checkpoint tensor.
nn::SourceLookup checkpoint_sources(const io::Checkpoint& checkpoint, const HFConfig& config);

// The sources of a checkpoint directory (checkpoint_sources) or of a .gguf file (gguf_sources).
nn::SourceLookup model_sources(const std::string& path, const HFConfig& config);

// Loads config.json + safetensors from `dir`, or a Llama GGUF file when `dir` ends in ".gguf"
// (models/gguf_model.hpp): sharded over the 1-D `tp_mesh` under `plan`, or unsharded. Checkpoint
// tensors of another dtype are converted to `dtype`. Errors name the offending tensor / module
// (missing, wrong shape, more ranks than attention heads).
std::shared_ptr<CausalLM> load_sharded(const std::string& dir, const DeviceMesh& tp_mesh, const nn::TpPlan& plan,
                                       DType dtype, nn::PlanReport* report = nullptr);
std::shared_ptr<CausalLM> load_unsharded(const std::string& dir, DType dtype);

struct Generation {
  std::vector<int64_t> new_ids;  // greedy tokens after the prompt
  Tensor prompt_logits;          // f32 [prompt length, vocab]: logits of every prompt position
  double prefill_seconds = 0, decode_seconds = 0;
  // Single-token forward calls timed by decode_seconds: max_new_tokens - 1 (the first new token
  // comes from the prefill's logits; the last one is never fed back).
  int64_t decode_steps = 0;
};

// Prefill the prompt, then max_new_tokens greedy steps (argmax; the lowest id wins ties). Resets
// the cache first. ValueError for an empty prompt or a negative max_new_tokens. `on_token`, when
// given, sees each new id as soon as it is chosen (streaming output). Generation ends early after
// `stop_id` (the end-of-sequence token), which is kept as the last new id.
Generation generate_greedy(CausalLM& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                           const std::function<void(int64_t)>& on_token = {},
                           std::optional<int64_t> stop_id = std::nullopt);

}  // namespace dtensor::models
