#include "models/decoder_layers.hpp"

#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "models/activation_checkpoint.hpp"
#include "models/layout.hpp"
#include "nn/strategy.hpp"
#include "tensor/ops.hpp"

namespace dtensor::models {

namespace ag = dtensor::autograd;

namespace {

// transformers: weight * (x * rsqrt(mean(x^2) + eps)).to(input_dtype). For f32 / f64 the fused
// kernel rounds exactly as that does; 16-bit inputs round the normalised value first.
Tensor hf_rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  if (dtype_size(x.dtype()) >= 4) return ag::rms_norm(x, weight, eps);
  return ag::mul(weight, ag::rms_norm(x, Tensor(), eps));
}

// The same on DTensor rows (DTensor ops: a weight replicated beside row-sharded x gets a P(sum)
// gradient). ones() rounds nothing, so rms_norm(x, ones) is the normalised value rounded once.
DTensor hf_rms_norm(const DTensor& x, const DTensor& weight, double eps) {
  if (dtype_size(x.dtype()) >= 4) return ag::rms_norm(x, weight, eps);
  const Device device = nn::Value(x).local().device();
  const DTensor ones = DTensor::from_local(Tensor::full(weight.shape(), 1.0, x.dtype(), device), weight.mesh(),
                                           weight.placements(), weight.shape());
  return ag::mul(weight, ag::rms_norm(x, ones, eps));
}

// Whether every rank holds whole rows (the last dim neither split nor partial).
bool rows_whole(const DTensor& x) {
  for (const Placement& p : x.placements()) {
    if (p.is_partial() || (p.is_shard() && p.normalized(x.dim()).dim() == x.dim() - 1)) return false;
  }
  return true;
}

const nn::Value& loaded_weight(const nn::Module& m, const char* name) {
  const nn::Value& w = m.parameter(name);
  check<ValueError>(w.defined(), m.type_name().c_str(), "parameter '{}' is not loaded", name);
  return w;
}

}  // namespace

// LlamaRMSNorm ------------------------------------------------------------------------------------

LlamaRMSNorm::LlamaRMSNorm(int64_t hidden, double eps, DType dtype) : Module("LlamaRMSNorm"), eps_(eps) {
  declare_parameter("weight", {hidden}, dtype);
}

nn::Value LlamaRMSNorm::forward(const nn::Value& x) {
  const nn::Value& weight = loaded_weight(*this, "weight");
  check<ShapeError>(weight.local().shape() == parameter_shape("weight"), "LlamaRMSNorm",
                    "this rank holds weight {} of {}: a norm's weight must be whole (replicate or sequence_parallel)",
                    shape_str(weight.local().shape()), shape_str(parameter_shape("weight")));
  if (!x.is_distributed()) return hf_rms_norm(x.tensor(), whole(weight), eps_);
  DTensor rows = x.dtensor();
  if (!rows_whole(rows)) rows = rows.redistribute(Placements(size_t(rows.mesh().ndim()), Replicate()));
  const Placements replicated(size_t(rows.mesh().ndim()), Replicate());
  const DTensor w = weight.is_distributed()
                        ? weight.dtensor().redistribute(replicated)
                        : DTensor::from_local(weight.tensor(), rows.mesh(), replicated, weight.shape());
  return hf_rms_norm(rows, w, eps_);
}

// LlamaAttention ----------------------------------------------------------------------------------

LlamaAttention::LlamaAttention(const HFConfig& config, DType dtype)
    : Module("LlamaAttention"), heads_{config.num_attention_heads, config.num_key_value_heads, config.head_dim} {
  const int64_t hidden = config.hidden_size, d = config.head_dim;
  q_proj_ = add_module("q_proj", std::make_shared<nn::Linear>(hidden, heads_.num_heads * d, false, dtype));
  k_proj_ = add_module("k_proj", std::make_shared<nn::Linear>(hidden, heads_.num_kv_heads * d, false, dtype));
  v_proj_ = add_module("v_proj", std::make_shared<nn::Linear>(hidden, heads_.num_kv_heads * d, false, dtype));
  o_proj_ = add_module("o_proj", std::make_shared<nn::Linear>(heads_.num_heads * d, hidden, false, dtype));
  q_proj_->set_heads(nn::HeadRole::Query, heads_);
  k_proj_->set_heads(nn::HeadRole::KeyValue, heads_);
  v_proj_->set_heads(nn::HeadRole::KeyValue, heads_);
  o_proj_->set_heads(nn::HeadRole::Output, heads_);
  set_heads_here({{0, heads_.num_heads}, {0, heads_.num_kv_heads}});  // unsharded until a plan splits them
}

void LlamaAttention::set_heads_here(const nn::RankHeads& heads) {
  heads_here_ = heads;
  // Query head h reads KV head h / group; both counted from this rank's first head.
  kv_head_of_.resize(size_t(heads.query.count()));
  for (int64_t h = 0; h < heads.query.count(); ++h) {
    kv_head_of_[size_t(h)] = (heads.query.begin + h) / heads_.group_size() - heads.kv.begin;
  }
}

void LlamaAttention::plan_applied(const std::string& name, const DeviceMesh& tp_mesh) {
  const auto splits = [](const nn::Module& m) {
    return m.strategy() != nullptr && m.strategy()->leaves_output_split();
  };
  const bool q = splits(*q_proj_), k = splits(*k_proj_), v = splits(*v_proj_);
  check<ValueError>(q == k && k == v, "tp_plan",
                    "module '{}': q_proj, k_proj and v_proj must all leave this rank's heads (colwise) or all their "
                    "whole output; split: q {}, k {}, v {}",
                    name, q, k, v);
  tp_mesh_ = tp_mesh;
  kv_heads_shared_ = q && nn::kv_heads_shared(heads_, tp_mesh.size());
  if (q) {
    set_heads_here(nn::rank_heads(heads_, tp_mesh.size(), tp_mesh.coordinate()[0]));
  } else {
    set_heads_here({{0, heads_.num_heads}, {0, heads_.num_kv_heads}});
  }
}

nn::Value LlamaAttention::operator()(const nn::Value& hidden, const LayerInputs& inputs) {
  return call_with_strategy(hidden, [&](const nn::Value& x) { return (*o_proj_)(attend(whole(x), inputs)); });
}

void LlamaAttention::check_projection_widths(const Tensor& q, const Tensor& k, const Tensor& v) const {
  const int64_t d = heads_.head_dim, query = heads_here_.query.count() * d, kv = heads_here_.kv.count() * d;
  check<ShapeError>(q.size(-1) == query && k.size(-1) == kv && v.size(-1) == kv, "LlamaAttention",
                    "q_proj, k_proj and v_proj gave {}, {} and {} features; this rank's query heads [{}, {}) and KV "
                    "heads [{}, {}) of head_dim {} need {}, {} and {}",
                    q.size(-1), k.size(-1), v.size(-1), heads_here_.query.begin, heads_here_.query.end,
                    heads_here_.kv.begin, heads_here_.kv.end, d, query, kv, kv);
}

void LlamaAttention::check_inputs(int64_t tokens, const LayerInputs& inputs) const {
  // A plain tensor that a sequence_parallel norm took for this rank's rows comes back np times longer.
  check<ValueError>(tokens == inputs.rotary.cos.size(0), "LlamaAttention",
                    "got {} positions for a forward of {} tokens: under sequence_parallel norms the residual stream "
                    "must arrive split on the sequence (embed_tokens: rowwise_to_sequence)",
                    tokens, inputs.rotary.cos.size(0));
  check<ValueError>(inputs.sequences >= 1 && tokens % inputs.sequences == 0, "LlamaAttention",
                    "{} tokens do not split into {} sequences of equal length", tokens, inputs.sequences);
  if (inputs.cache == nullptr) return;
  check<ValueError>(inputs.sequences == 1, "LlamaAttention", "a KV cache holds one sequence, got {} sequences",
                    inputs.sequences);
  check<ValueError>(inputs.cache->length() == inputs.first_position, "LlamaAttention",
                    "the KV cache holds {} positions, but the tokens start at position {}", inputs.cache->length(),
                    inputs.first_position);
}

// k or v of this rank's KV heads. When other ranks hold some of them too, a recorded forward runs
// the projection's strategy around a product with sum_shared_head_gradients(weight), so that each
// head's weight gradient sums over every rank reading it.
Tensor LlamaAttention::project_kv(nn::Linear& projection, const Tensor& hidden) {
  const nn::Value& weight = projection.parameter("weight");
  if (!kv_heads_shared_ || projection.strategy() == nullptr || !weight.defined() || weight.is_distributed() ||
      !ag::requires_grad(weight.tensor()))
    return whole(projection(hidden));
  const nn::Strategy& strategy = *projection.strategy();
  const DeviceMesh& mesh = projection.strategy_mesh();
  const nn::Value input = strategy.prepare_input(hidden, projection, mesh);
  const Tensor summed = nn::sum_shared_head_gradients(weight.tensor(), heads_, heads_here_.kv, tp_mesh_);
  return whole(strategy.prepare_output(ag::linear(input.tensor("KV projection input"), summed), projection, mesh));
}

// Causal attention within each of `sequences` equal runs of q's rows (and k's, v's: no cache).
Tensor LlamaAttention::attention_per_sequence(const Tensor& q, const Tensor& k, const Tensor& v,
                                              int64_t sequences) const {
  if (sequences == 1) return ag::causal_attention(q, k, v, kv_head_of_);
  // chunk: one node per tensor, whose backward joins the pieces' gradients once.
  const std::vector<Tensor> qs = ag::chunk(q, sequences, 0), ks = ag::chunk(k, sequences, 0),
                            vs = ag::chunk(v, sequences, 0);
  std::vector<Tensor> outputs;
  for (size_t s = 0; s < qs.size(); ++s) outputs.push_back(ag::causal_attention(qs[s], ks[s], vs[s], kv_head_of_));
  return ag::cat(outputs, 0);
}

// The attention output of this rank's query heads, [S, query heads * head_dim], before o_proj.
Tensor LlamaAttention::attend(const Tensor& input, const LayerInputs& inputs) {
  const int64_t tokens = input.size(0), d = heads_.head_dim;
  check_inputs(tokens, inputs);
  const Tensor q = whole((*q_proj_)(input)), k = project_kv(*k_proj_, input), v = project_kv(*v_proj_, input);
  check_projection_widths(q, k, v);
  const int64_t query_heads = heads_here_.query.count(), kv_heads = heads_here_.kv.count();
  const Tensor q_rot = ag::apply_rotary(ag::reshape(q, {tokens, query_heads, d}), inputs.rotary);
  Tensor keys = ag::apply_rotary(ag::reshape(k, {tokens, kv_heads, d}), inputs.rotary);
  Tensor values = ag::reshape(v, {tokens, kv_heads, d});
  if (inputs.cache != nullptr) std::tie(keys, values) = inputs.cache->append(keys, values);
  return ag::reshape(attention_per_sequence(q_rot, keys, values, inputs.sequences), {tokens, query_heads * d});
}

// LlamaMLP ----------------------------------------------------------------------------------------

LlamaMLP::LlamaMLP(int64_t hidden, int64_t intermediate, DType dtype) : Module("LlamaMLP") {
  gate_proj_ = add_module("gate_proj", std::make_shared<nn::Linear>(hidden, intermediate, false, dtype));
  up_proj_ = add_module("up_proj", std::make_shared<nn::Linear>(hidden, intermediate, false, dtype));
  down_proj_ = add_module("down_proj", std::make_shared<nn::Linear>(intermediate, hidden, false, dtype));
}

nn::Value LlamaMLP::forward(const nn::Value& x) {
  const Tensor input = whole(x);
  // colwise gate / up give this rank's intermediate columns, the slice a rowwise down expects.
  const Tensor gate = whole((*gate_proj_)(input)), up = whole((*up_proj_)(input));
  return (*down_proj_)(ag::mul(ag::silu(gate), up));
}

// DecoderLayer ------------------------------------------------------------------------------------

DecoderLayer::DecoderLayer(const HFConfig& config, DType dtype) : Module("DecoderLayer") {
  const int64_t hidden = config.hidden_size;
  input_layernorm_ = add_module("input_layernorm", std::make_shared<LlamaRMSNorm>(hidden, config.rms_norm_eps, dtype));
  self_attn_ = add_module("self_attn", std::make_shared<LlamaAttention>(config, dtype));
  post_attention_layernorm_ =
      add_module("post_attention_layernorm", std::make_shared<LlamaRMSNorm>(hidden, config.rms_norm_eps, dtype));
  if (config.is_moe()) {
    ffn_ = add_module("block_sparse_moe",
                      std::make_shared<nn::SparseMoE>(config.num_local_experts, config.num_experts_per_tok, hidden,
                                                      config.intermediate_size, dtype));
  } else {
    ffn_ = add_module("mlp", std::make_shared<LlamaMLP>(hidden, config.intermediate_size, dtype));
  }
}

nn::Value DecoderLayer::operator()(const nn::Value& hidden, const LayerInputs& inputs) {
  if (!checkpointing_ || inputs.cache != nullptr)
    return call_with_strategy(hidden, [&](const nn::Value& x) { return residual_blocks(x, inputs); });
  // The body runs again in the backward, after this call returned: it owns copies of its inputs.
  const int64_t first = inputs.first_position, sequences = inputs.sequences;
  return checkpointed(hidden, *this, [this, first, rotary = inputs.rotary, sequences](const nn::Value& h) {
    const LayerInputs own{first, rotary, nullptr, sequences};
    return call_with_strategy(h, [&](const nn::Value& x) { return residual_blocks(x, own); });
  });
}

nn::Value DecoderLayer::residual_blocks(const nn::Value& x, const LayerInputs& inputs) {
  // Attention and the feed-forward block see the whole sequence: one gather each under
  // sequence parallelism (none otherwise).
  const nn::Value h = add_residual(x, (*self_attn_)(whole((*input_layernorm_)(x)), inputs));
  return add_residual(h, (*ffn_)(whole((*post_attention_layernorm_)(h))));
}

}  // namespace dtensor::models
