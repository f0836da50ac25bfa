#include "models/causal_lm.hpp"

#include "models/layout.hpp"
#include "nn/strategy.hpp"
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

// Logits as lm_head left them, a vocab split of plain columns wrapped as the DTensor it is.
nn::Value vocab_sharded(const nn::Value& logits, const nn::Module& lm_head, int64_t vocab) {
  const nn::Strategy* strategy = lm_head.strategy();
  if (logits.is_distributed() || strategy == nullptr || !strategy->leaves_output_split()) return logits;
  return DTensor::from_local(logits.tensor(), lm_head.strategy_mesh(), {Shard(-1)}, Shape{logits.shape()[0], vocab});
}

void check_training_ids(const Tensor& ids, int64_t vocab) {
  check<ValueError>(ids.defined(), "training_logits", "ids is undefined");
  check<ShapeError>(ids.dim() == 2 && ids.numel() > 0, "training_logits",
                    "ids must be a non-empty [batch, length] tensor, got {}", shape_str(ids.shape()));
  check<DTypeError>(ids.dtype() == DType::I64 || ids.dtype() == DType::I32, "training_logits",
                    "ids must be i64 or i32, got {}", ids.dtype());
  const std::vector<int64_t> values = ids.to(DType::I64).to_vector<int64_t>();
  for (size_t i = 0; i < values.size(); ++i) {
    check<ValueError>(values[i] >= 0 && values[i] < vocab, "training_logits",
                      "id {} at [{}, {}] is outside the vocab [0, {})", values[i], int64_t(i) / ids.size(1),
                      int64_t(i) % ids.size(1), vocab);
  }
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
    nn::Value logits = run(tokens, rotary, /*cache=*/true, 1);
    cache_length_ += tokens.numel();
    return logits;
  } catch (...) {
    // The layers that ran have cached these positions: forget them, so the caches stay aligned.
    for (KVCache& cache : caches_) cache.truncate(cache_length_);
    throw;
  }
}

nn::Value CausalLM::run(const Tensor& tokens, const RotaryTables& rotary, bool cache, int64_t sequences) {
  nn::Value h = (*embed_tokens_)(tokens);
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = (*layers_[i])(h, {cache ? cache_length_ : 0, rotary, cache ? &caches_[i] : nullptr, sequences});
  }
  return head((*norm_)(h));
}

nn::Value CausalLM::head(const nn::Value& hidden) {
  // An lm_head without a strategy takes plain input; with one, its strategy gathers the sequence.
  const nn::Value input = lm_head_->strategy() ? hidden : nn::Value(whole(hidden));
  if (!tied_) return (*lm_head_)(input);
  // Tied: lm_head borrows the embedding's weight (the same handle, so one gradient) for this call.
  nn::Value weight = embed_tokens_->parameter("weight");
  if (tied_head_placements_) weight = weight.dtensor().redistribute(*tied_head_placements_);
  nn::Value& slot = lm_head_->parameter("weight");
  slot = weight;
  try {
    nn::Value logits = (*lm_head_)(input);
    slot = nn::Value();
    return logits;
  } catch (...) {
    slot = nn::Value();
    throw;
  }
}

nn::Value CausalLM::training_logits(const Tensor& ids) {
  check<ValueError>(!embed_tokens_->quantized_weight(), "training_logits",
                    "the model's weights are quantized: quantized models are for inference only");
  check_training_ids(ids, config_.vocab_size);
  const int64_t batch = ids.size(0), length = ids.size(1);
  std::vector<int64_t> positions;
  positions.reserve(size_t(batch * length));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < length; ++t) positions.push_back(t);
  }
  const RotaryTables rotary = rotary_tables(positions, config_.head_dim, config_.rope_theta, dtype_, device());
  const Tensor tokens = ids.to(DType::I64).reshape({batch * length}).to(device());
  return vocab_sharded(run(tokens, rotary, /*cache=*/false, batch), *lm_head_, config_.vocab_size);
}

void CausalLM::set_activation_checkpointing(bool on) {
  checkpointing_ = on;
  for (const auto& layer : layers_) layer->set_checkpointing(on);
}

// Quantized: lm_head takes the embedding's quantized table when both hold the same block of it
// (the same rows on this rank), and keeps its own otherwise.
void CausalLM::tie_quantized_embeddings() {
  const auto& table = embed_tokens_->quantized_weight();
  const auto& own = lm_head_->quantized_weight();
  if (!table || !own) return;
  if (table->placements == own->placements && table->local.rows() == own->local.rows() &&
      table->local.cols() == own->local.cols())
    lm_head_->set_quantized_weight(table);
}

void CausalLM::tie_word_embeddings() {
  if (!config_.tie_word_embeddings || tied_) return;
  if (embed_tokens_->quantized_weight()) return tie_quantized_embeddings();
  const nn::Value& embedding = embed_tokens_->parameter("weight");
  nn::Value& own = lm_head_->parameter("weight");
  const bool both_distributed = embedding.is_distributed() && own.is_distributed();
  const bool both_plain_alike =
      !embedding.is_distributed() && !own.is_distributed() && embedding.shape() == own.shape();
  check<ValueError>(embedding.defined() && own.defined() && (both_distributed || both_plain_alike), "CausalLM",
                    "tie_word_embeddings: model.embed_tokens.weight ({}) cannot serve as lm_head.weight ({}); split "
                    "them alike in the plan",
                    embedding.describe(), own.describe());
  if (both_distributed && own.dtensor().placements() != embedding.dtensor().placements())
    tied_head_placements_ = own.dtensor().placements();
  own = nn::Value();
  lm_head_->mark_parameter_borrowed("weight");
  tied_ = true;
}

Tensor CausalLM::forward_tokens(const std::vector<int64_t>& ids) {
  check_ids(ids, config_.vocab_size);
  const nn::Value logits = (*this)(Tensor::from_vector(ids, {int64_t(ids.size())}).to(device()));
  return full_vocab(logits, *lm_head_, config_.vocab_size).to(DType::F32);
}

Device CausalLM::device() const { return embed_tokens_->device(); }

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
