#include "models/decoder_layers.hpp"

#include "models/layout.hpp"
#include "tensor/ops.hpp"

namespace dtensor::models {

namespace {

// transformers: weight * (x * rsqrt(mean(x^2) + eps)).to(input_dtype). For f32 / f64 the fused
// kernel rounds exactly as that does; 16-bit inputs round the normalised value first.
Tensor hf_rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  if (dtype_size(x.dtype()) >= 4) return rms_norm(x, weight, eps);
  return mul(weight, rms_norm(x, Tensor(), eps));
}

// Whether every rank holds whole rows (the last dim neither split nor partial).
bool rows_whole(const DTensor& x) {
  for (const Placement& p : x.placements()) {
    if (p.is_partial() || (p.is_shard() && p.normalized(x.dim()).dim() == x.dim() - 1)) return false;
  }
  return true;
}

const Tensor& loaded_weight(const nn::Module& m, const char* name) {
  const nn::Value& w = m.parameter(name);
  check<ValueError>(w.defined(), m.type_name().c_str(), "parameter '{}' is not loaded", name);
  return w.local();
}

}  // namespace

// LlamaRMSNorm ------------------------------------------------------------------------------------

LlamaRMSNorm::LlamaRMSNorm(int64_t hidden, double eps, DType dtype) : Module("LlamaRMSNorm"), eps_(eps) {
  declare_parameter("weight", {hidden}, dtype);
}

nn::Value LlamaRMSNorm::forward(const nn::Value& x) {
  const Tensor& weight = loaded_weight(*this, "weight");
  check<ShapeError>(weight.shape() == parameter_shape("weight"), "LlamaRMSNorm",
                    "this rank holds weight {} of {}: a norm's weight must be whole (replicate or sequence_parallel)",
                    shape_str(weight.shape()), shape_str(parameter_shape("weight")));
  if (!x.is_distributed()) return hf_rms_norm(x.tensor(), weight, eps_);
  DTensor rows = x.dtensor();
  if (!rows_whole(rows)) rows = rows.redistribute(Placements(size_t(rows.mesh().ndim()), Replicate()));
  return DTensor::from_local(hf_rms_norm(rows.to_local(), weight, eps_), rows.mesh(), rows.placements(), rows.shape());
}

// LlamaAttention ----------------------------------------------------------------------------------

LlamaAttention::LlamaAttention(const HFConfig& config, DType dtype, std::shared_ptr<const RotaryContext> rotary)
    : Module("LlamaAttention"),
      heads_{config.num_attention_heads, config.num_key_value_heads, config.head_dim},
      rotary_(std::move(rotary)) {
  const int64_t hidden = config.hidden_size, d = config.head_dim;
  q_proj_ = add_module("q_proj", std::make_shared<nn::Linear>(hidden, heads_.num_heads * d, false, dtype));
  k_proj_ = add_module("k_proj", std::make_shared<nn::Linear>(hidden, heads_.num_kv_heads * d, false, dtype));
  v_proj_ = add_module("v_proj", std::make_shared<nn::Linear>(hidden, heads_.num_kv_heads * d, false, dtype));
  o_proj_ = add_module("o_proj", std::make_shared<nn::Linear>(heads_.num_heads * d, hidden, false, dtype));
  q_proj_->set_heads(nn::HeadRole::Query, heads_);
  k_proj_->set_heads(nn::HeadRole::KeyValue, heads_);
  v_proj_->set_heads(nn::HeadRole::KeyValue, heads_);
  o_proj_->set_heads(nn::HeadRole::Output, heads_);
}

nn::RankHeads LlamaAttention::heads_here(int64_t q_features, int64_t kv_features) const {
  const int64_t d = heads_.head_dim;
  const nn::RankHeads all{{0, heads_.num_heads}, {0, heads_.num_kv_heads}};
  if (q_features == all.query.count() * d && kv_features == all.kv.count() * d) return all;
  if (q_proj_->strategy() != nullptr) {
    const DeviceMesh& mesh = q_proj_->strategy_mesh();
    const nn::RankHeads mine = nn::rank_heads(heads_, mesh.size(), mesh.coordinate()[0]);
    if (q_features == mine.query.count() * d && kv_features == mine.kv.count() * d) return mine;
  }
  fail<ValueError>("LlamaAttention",
                   "the projections gave {} query and {} key features: neither all heads ({} and {} of head_dim {}) "
                   "nor this rank's heads; q_proj, k_proj and v_proj must be split alike (colwise)",
                   q_features, kv_features, heads_.num_heads, heads_.num_kv_heads, d);
}

nn::Value LlamaAttention::forward(const nn::Value& x) {
  const Tensor input = whole(x);
  // A plain tensor that a sequence_parallel norm took for this rank's rows comes back np times longer.
  check<ValueError>(input.size(0) == rotary_->tables.cos.size(0), "LlamaAttention",
                    "got {} positions for a forward of {} tokens: under sequence_parallel norms the residual stream "
                    "must arrive split on the sequence (embed_tokens: rowwise_to_sequence)",
                    input.size(0), rotary_->tables.cos.size(0));
  const Tensor q = whole((*q_proj_)(input)), k = whole((*k_proj_)(input)), v = whole((*v_proj_)(input));
  const nn::RankHeads mine = heads_here(q.size(-1), k.size(-1));
  const int64_t seq = input.size(0), d = heads_.head_dim;
  const int64_t query_heads = mine.query.count(), kv_heads = mine.kv.count();
  const Tensor q_rot = apply_rotary(q.reshape({seq, query_heads, d}), rotary_->tables);
  const Tensor k_rot = apply_rotary(k.reshape({seq, kv_heads, d}), rotary_->tables);
  const auto [keys, values] = cache_.append(k_rot, v.reshape({seq, kv_heads, d}));
  // Query head h reads KV head h / group; both counted from this rank's first head.
  std::vector<int64_t> kv_head_of(static_cast<size_t>(query_heads));
  for (int64_t h = 0; h < query_heads; ++h) {
    kv_head_of[size_t(h)] = (mine.query.begin + h) / heads_.group_size() - mine.kv.begin;
  }
  const Tensor attended = causal_attention(q_rot, keys, values, kv_head_of);
  return (*o_proj_)(attended.view({seq, query_heads * d}));
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
  return (*down_proj_)(mul(silu(gate), up));
}

// DecoderLayer ------------------------------------------------------------------------------------

DecoderLayer::DecoderLayer(const HFConfig& config, DType dtype, std::shared_ptr<const RotaryContext> rotary)
    : Module("DecoderLayer") {
  const int64_t hidden = config.hidden_size;
  input_layernorm_ = add_module("input_layernorm", std::make_shared<LlamaRMSNorm>(hidden, config.rms_norm_eps, dtype));
  self_attn_ = add_module("self_attn", std::make_shared<LlamaAttention>(config, dtype, std::move(rotary)));
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

nn::Value DecoderLayer::forward(const nn::Value& x) {
  // Attention and the feed-forward block see the whole sequence: one gather each under
  // sequence parallelism (none otherwise).
  const nn::Value h = add_residual(x, (*self_attn_)(whole((*input_layernorm_)(x))));
  return add_residual(h, (*ffn_)(whole((*post_attention_layernorm_)(h))));
}

}  // namespace dtensor::models
