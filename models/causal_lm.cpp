#include "models/causal_lm.hpp"

#include "models/layout.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <numeric>

namespace dtensor::models {

namespace {

const char* model_type_name(const HFConfig& config) {
  if (config.architecture == "LlamaForCausalLM") return "LlamaModel";
  if (config.architecture == "MixtralForCausalLM") return "MixtralModel";
  fail<ValueError>("CausalLM", "architecture '{}' is not LlamaForCausalLM or MixtralForCausalLM", config.architecture);
}

// Logits [S, vocab] whole on every rank: gathered when lm_head left them split (a DTensor, or
// this rank's vocab columns under a strategy that leaves its output split, as colwise does).
Tensor full_vocab(const nn::Value& logits, const nn::Module& lm_head, int64_t vocab) {
  if (logits.is_distributed()) return whole(logits);
  const nn::Strategy* strategy = lm_head.strategy();
  if (strategy == nullptr || !strategy->leaves_output_split()) {
    check<ValueError>(logits.shape().back() == vocab, "CausalLM", "lm_head returned {} columns of a {} vocab",
                      logits.shape().back(), vocab);
    return logits.tensor();
  }
  const Shape global = {logits.shape()[0], vocab};
  return DTensor::from_local(logits.tensor(), lm_head.strategy_mesh(), {Shard(-1)}, global)
      .redistribute({Replicate()})
      .to_local();
}

void check_ids(const std::vector<int64_t>& ids, int64_t vocab) {
  check<ValueError>(!ids.empty(), "forward_tokens", "ids is empty: there is no token to run");
  for (size_t i = 0; i < ids.size(); ++i) {
    check<ValueError>(ids[i] >= 0 && ids[i] < vocab, "forward_tokens",
                      "id {} at position {} is outside the vocab [0, {})", ids[i], i, vocab);
  }
}

}  // namespace

CausalLM::CausalLM(const HFConfig& config, DType dtype)
    : Module(config.architecture), config_(config), dtype_(dtype), caches_(size_t(config.num_hidden_layers)) {
  check<DTypeError>(is_floating(dtype), "CausalLM", "the model's dtype must be floating, got {}", dtype);
  auto model = add_module("model", std::make_shared<nn::Module>(model_type_name(config)));
  embed_tokens_ =
      model->add_module("embed_tokens", std::make_shared<nn::Embedding>(config.vocab_size, config.hidden_size, dtype));
  auto layers = model->add_module("layers", std::make_shared<nn::Module>("ModuleList"));
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers_.push_back(layers->add_module(std::to_string(i), std::make_shared<DecoderLayer>(config, dtype)));
  }
  norm_ = model->add_module("norm", std::make_shared<LlamaRMSNorm>(config.hidden_size, config.rms_norm_eps, dtype));
  lm_head_ = add_module("lm_head", std::make_shared<nn::Linear>(config.hidden_size, config.vocab_size, false, dtype));
}

nn::Value CausalLM::forward(const nn::Value& ids) {
  const Tensor& tokens = ids.tensor("CausalLM ids");
  std::vector<int64_t> positions(static_cast<size_t>(tokens.numel()));
  std::iota(positions.begin(), positions.end(), cache_length_);
  const RotaryTables rotary = rotary_tables(positions, config_.head_dim, config_.rope_theta, dtype_, device());
  try {
    nn::Value h = (*embed_tokens_)(tokens);
    for (size_t i = 0; i < layers_.size(); ++i) h = (*layers_[i])(h, {cache_length_, rotary, caches_[i]});
    h = (*norm_)(h);
    // An lm_head without a strategy takes plain input; with one, its strategy gathers the sequence.
    nn::Value logits = (*lm_head_)(lm_head_->strategy() ? h : nn::Value(whole(h)));
    cache_length_ += tokens.numel();
    return logits;
  } catch (...) {
    // The layers that ran have cached these positions: forget them, so the caches stay aligned.
    for (KVCache& cache : caches_) cache.truncate(cache_length_);
    throw;
  }
}

Tensor CausalLM::forward_tokens(const std::vector<int64_t>& ids) {
  check_ids(ids, config_.vocab_size);
  const nn::Value logits = (*this)(Tensor::from_vector(ids, {int64_t(ids.size())}).to(device()));
  return full_vocab(logits, *lm_head_, config_.vocab_size).to(DType::F32);
}

Device CausalLM::device() const { return embed_tokens_->parameter("weight").local().device(); }

void CausalLM::reset_cache() {
  for (KVCache& cache : caches_) cache.clear();
  cache_length_ = 0;
}

void CausalLM::reserve_cache(int64_t tokens) {
  for (KVCache& cache : caches_) cache.reserve(tokens);
}

nn::TpPlan auto_tp_plan(const HFConfig& config) {
  nn::TpPlan plan{{
      {"model.embed_tokens", "rowwise"},
      {"model.layers.*.self_attn.q_proj", "colwise"},
      {"model.layers.*.self_attn.k_proj", "colwise"},
      {"model.layers.*.self_attn.v_proj", "colwise"},
      {"model.layers.*.self_attn.o_proj", "rowwise"},
  }};
  if (config.is_moe()) {
    plan.rules.push_back({"model.layers.*.block_sparse_moe.experts", "moe_tp_experts"});
  } else {
    plan.rules.push_back({"model.layers.*.mlp.gate_proj", "colwise"});
    plan.rules.push_back({"model.layers.*.mlp.up_proj", "colwise"});
    plan.rules.push_back({"model.layers.*.mlp.down_proj", "rowwise"});
  }
  plan.rules.push_back({"lm_head", "colwise_rep"});
  return plan;
}

nn::TpPlan sequence_parallel_tp_plan(const HFConfig& config) {
  nn::TpPlan plan = auto_tp_plan(config);
  for (nn::TpRule& rule : plan.rules) {
    if (rule.pattern == "model.embed_tokens" || rule.pattern.ends_with(".o_proj") ||
        rule.pattern.ends_with(".down_proj"))
      rule.strategy = "rowwise_to_sequence";
  }
  for (const char* norm : {"model.layers.*.input_layernorm", "model.layers.*.post_attention_layernorm", "model.norm"})
    plan.rules.push_back({norm, "sequence_parallel"});
  return plan;
}

}  // namespace dtensor::models
