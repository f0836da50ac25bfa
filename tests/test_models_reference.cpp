// The models' numerics against transformers' LlamaForCausalLM / MixtralForCausalLM written out
// in f64 with plain tensor ops from the checkpoint's own tensors (not through models/): RMSNorm,
// rotary with rope_theta (rotate_half convention), grouped-query causal attention scaled by
// 1 / sqrt(head_dim), SwiGLU MLP, Mixtral's router (softmax, top-k, renormalised) over per-expert
// w1 / w3 / w2. Also the Linear profile's flop count.
#include "test_models_util.hpp"

#include "models/causal_lm.hpp"
#include "nn/linear_profile.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

using namespace dtensor;
using models_test::SharedDir;
using models_test::TinySpec;

namespace {

using Weights = std::map<std::string, Tensor>;

Weights as_f64(const io::NamedTensors& tensors) {
  Weights out;
  for (const auto& [name, t] : tensors) out[name] = t.to(DType::F64);
  return out;
}

Tensor rms(const Tensor& x, const Tensor& w) {
  return mul(mul(x, rsqrt(add(mean(mul(x, x), {-1}, true), 1e-5))), w);  // config: rms_norm_eps 1e-5
}

// x [S, H, D] at positions 0 .. S-1: x * cos + rotate_half(x) * sin, theta 1000 (config).
Tensor rope(const Tensor& x) {
  const int64_t seq = x.size(0), d = x.size(2);
  std::vector<double> cos(size_t(seq * d)), sin(size_t(seq * d));
  for (int64_t s = 0; s < seq; ++s)
    for (int64_t i = 0; i < d; ++i) {
      const double angle = double(s) / std::pow(1000.0, double(2 * (i % (d / 2))) / double(d));
      cos[size_t(s * d + i)] = std::cos(angle);
      sin[size_t(s * d + i)] = std::sin(angle);
    }
  const Tensor c = Tensor::from_vector(cos, {seq, 1, d}), s = Tensor::from_vector(sin, {seq, 1, d});
  const Tensor rotated = cat({neg(x.narrow(2, d / 2, d / 2)), x.narrow(2, 0, d / 2)}, 2);
  return add(mul(x, c), mul(rotated, s));
}

Tensor causal_mask(int64_t seq) {
  std::vector<uint8_t> mask(size_t(seq * seq), 0);
  for (int64_t i = 0; i < seq; ++i)
    for (int64_t j = i + 1; j < seq; ++j) mask[size_t(i * seq + j)] = 1;
  return Tensor::from_vector(mask, {seq, seq});
}

Tensor attention(const Tensor& x, const Weights& w, const std::string& p, const TinySpec& s) {
  const int64_t seq = x.size(0), d = s.dim();
  const Tensor q = rope(linear(x, w.at(p + "q_proj.weight")).reshape({seq, s.heads, d}));
  const Tensor k = rope(linear(x, w.at(p + "k_proj.weight")).reshape({seq, s.kv_heads, d}));
  const Tensor v = linear(x, w.at(p + "v_proj.weight")).reshape({seq, s.kv_heads, d});
  std::vector<Tensor> heads;
  for (int64_t h = 0; h < s.heads; ++h) {
    const int64_t kv = h / (s.heads / s.kv_heads);  // repeat_kv
    Tensor scores = mul(matmul(q.select(1, h), k.select(1, kv).transpose(0, 1)), 1.0 / std::sqrt(double(d)));
    scores = masked_fill(scores, causal_mask(seq), -std::numeric_limits<double>::infinity());
    heads.push_back(matmul(softmax(scores, -1), v.select(1, kv)));
  }
  return linear(cat(heads, 1), w.at(p + "o_proj.weight"));
}

Tensor swiglu(const Tensor& x, const Tensor& gate, const Tensor& up, const Tensor& down) {
  return linear(mul(silu(linear(x, gate)), linear(x, up)), down);
}

// Mixtral: per token, softmax over the router logits, the top-k experts, weights renormalised.
Tensor sparse_moe(const Tensor& x, const Weights& w, const std::string& p, const TinySpec& s) {
  const Tensor probs = softmax(linear(x, w.at(p + "gate.weight")), -1);
  std::vector<Tensor> rows;
  for (int64_t t = 0; t < x.size(0); ++t) {
    const std::vector<double> pr = probs.select(0, t).to_vector<double>();
    std::vector<int64_t> order(pr.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return pr[size_t(a)] > pr[size_t(b)]; });
    double total = 0;
    for (int64_t j = 0; j < s.top_k; ++j) total += pr[size_t(order[size_t(j)])];
    const Tensor xt = x.narrow(0, t, 1);
    Tensor out = Tensor::zeros({1, s.hidden}, DType::F64);
    for (int64_t j = 0; j < s.top_k; ++j) {
      const std::string e = fmt::format("{}experts.{}.", p, order[size_t(j)]);
      const Tensor y = swiglu(xt, w.at(e + "w1.weight"), w.at(e + "w3.weight"), w.at(e + "w2.weight"));
      out = add(out, mul(y, pr[size_t(order[size_t(j)])] / total));
    }
    rows.push_back(out);
  }
  return cat(rows, 0);
}

// transformers' forward of the whole prompt (positions 0 ..): logits [S, vocab] in f64.
Tensor reference_logits(const TinySpec& s, const Weights& w, const std::vector<int64_t>& ids) {
  Tensor h = embedding(w.at("model.embed_tokens.weight"), Tensor::from_vector(ids, {int64_t(ids.size())}));
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    h = add(h, attention(rms(h, w.at(p + "input_layernorm.weight")), w, p + "self_attn.", s));
    const Tensor n = rms(h, w.at(p + "post_attention_layernorm.weight"));
    h = add(h, s.mixtral() ? sparse_moe(n, w, p + "block_sparse_moe.", s)
                           : swiglu(n, w.at(p + "mlp.gate_proj.weight"), w.at(p + "mlp.up_proj.weight"),
                                    w.at(p + "mlp.down_proj.weight")));
  }
  const Tensor& head = s.tie ? w.at("model.embed_tokens.weight") : w.at("lm_head.weight");
  return linear(rms(h, w.at("model.norm.weight")), head);
}

DeviceMesh world_line() { return DeviceMesh::from_world({world().size()}); }

}  // namespace

TEST_CASE("Llama and Mixtral logits follow transformers' forward", "[models][reference]") {
  TinySpec llama;
  llama.head_dim = 8;  // q_proj [32, 16]: head_dim from config, not hidden / heads
  TinySpec tied;
  tied.tie = true;
  tied.seed = 7;
  TinySpec mixtral;
  mixtral.architecture = "MixtralForCausalLM";
  mixtral.seed = 8;
  const std::vector<int64_t> ids = {5, 0, 36, 12, 12, 7, 30};
  for (const TinySpec& spec : {llama, tied, mixtral}) {
    INFO(spec.architecture << " tie " << spec.tie);
    SharedDir dir;
    const io::NamedTensors tensors = models_test::tiny_weights(spec);
    models_test::write_checkpoint(dir, models_test::config_json(spec), tensors);
    const Tensor expected = reference_logits(spec, as_f64(tensors), ids);
    const Tensor got = models::load_sharded(dir.str(), world_line(),
                                            models::auto_tp_plan(models::load_hf_config(dir.str())), DType::F32)
                           ->forward_tokens(ids);
    CHECK(max_abs_diff(got.to(DType::F64), expected) <= 1e-4);
  }
}

TEST_CASE("ScopedLinearProfile counts 2 M N K of every Linear of this rank", "[models][profile]") {
  SharedDir dir;
  TinySpec spec;
  models_test::write_checkpoint(dir, spec);
  auto model = models::load_unsharded(dir.str(), DType::F32);
  const int64_t tokens = 5, d = spec.dim(), h = spec.hidden;
  // Per token and layer: q, k, v, o, gate, up, down; then lm_head.
  const int64_t layer_weights = h * (spec.heads * d) * 2 + h * (spec.kv_heads * d) * 2 + 3 * h * spec.intermediate;
  const double expected = 2.0 * double(tokens) * double(spec.layers * layer_weights + h * spec.vocab);
  nn::ScopedLinearProfile outer;
  {
    nn::ScopedLinearProfile inner;
    model->forward_tokens({1, 2, 3, 4, 5});
    CHECK(inner.stats().flops == expected);
    CHECK(inner.stats().calls == 7 * spec.layers + 1);
    CHECK(inner.stats().seconds > 0);
  }
  CHECK(outer.stats().flops == expected);  // enclosing profiles count too
  model->forward_tokens({6});
  CHECK(outer.stats().flops == expected * 6 / 5);
  CHECK(nn::ScopedLinearProfile::active());

  // Sharded under the auto plan, the ranks' local products add up to the whole (heads and
  // intermediate split without replication at 4 heads / 2 KV heads on np 1 and 2).
  if (world().size() <= 2) {
    auto sharded = models::load_sharded(dir.str(), world_line(),
                                        models::auto_tp_plan(models::load_hf_config(dir.str())), DType::F32);
    nn::ScopedLinearProfile local;
    sharded->forward_tokens({1, 2, 3, 4, 5});
    Tensor flops = Tensor::full({1}, local.stats().flops, DType::F64);
    world().all_reduce(flops, ReduceOp::Sum);
    CHECK(flops.item<double>() == expected);
  }
}
