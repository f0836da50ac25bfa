// Llama and Mixtral (models/causal_lm.hpp) loaded from tiny random checkpoints in Hugging Face
// layout, sharded over the world (np 1..4) under the auto plan and the sequence-parallel plan,
// against the same checkpoint loaded unsharded on every rank: prompt logits within 1e-4 and the
// same greedy ids. Cases: uneven vocab (37), KV heads replicated (2 KV heads at np 4), tied
// embeddings, 6 heads at np 4 (uneven head split) with head_dim from config, Mixtral top-2 of 4
// experts with an intermediate size the TP size does not divide.
#include "test_models_util.hpp"

#include "collectives/comm_recorder.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "tensor/cpu/onednn_gemm.hpp"
#include "tensor/ops.hpp"

using namespace dtensor;
using models_test::SharedDir;
using models_test::TinySpec;
using models_test::world_line;

namespace {

const std::vector<int64_t> kPrompt = {3, 17, 0, 36, 5, 22, 9, 11, 30};
constexpr int64_t kNewTokens = 5;

// The sequence-parallel plan of a Llama as a user would write it in a plan file.
const char* kLlamaSequenceParallelJson = R"({
  "model.embed_tokens": "rowwise_to_sequence",
  "model.layers.*.input_layernorm": "sequence_parallel",
  "model.layers.*.self_attn.q_proj": "colwise",
  "model.layers.*.self_attn.k_proj": "colwise",
  "model.layers.*.self_attn.v_proj": "colwise",
  "model.layers.*.self_attn.o_proj": "rowwise_to_sequence",
  "model.layers.*.post_attention_layernorm": "sequence_parallel",
  "model.layers.*.mlp.gate_proj": "colwise",
  "model.layers.*.mlp.up_proj": "colwise",
  "model.layers.*.mlp.down_proj": "rowwise_to_sequence",
  "model.norm": "sequence_parallel",
  "lm_head": "colwise_rep"
})";

std::vector<std::pair<std::string, nn::TpPlan>> plans_for(const models::HFConfig& config) {
  nn::TpPlan sp =
      config.is_moe() ? models::sequence_parallel_tp_plan(config) : nn::TpPlan::from_json(kLlamaSequenceParallelJson);
  return {{"auto", models::auto_tp_plan(config)}, {"sequence parallel", sp}};
}

// The gap between the largest and the second largest logit of each row: greedy comparisons are
// only meaningful when it is well above the tolerance.
double smallest_top2_gap(const Tensor& logits) {
  double gap = 1e30;
  for (int64_t r = 0; r < logits.size(0); ++r) {
    auto [values, ids] = topk(logits.select(0, r), 2, 0);
    const std::vector<float> v = values.to_vector<float>();
    gap = std::min(gap, double(v[0] - v[1]));
  }
  return gap;
}

// The collectives of one prompt forward: plain TP all-reduces once per block (attention, MLP or
// MoE) plus once for the embedding, and gathers the logits; sequence parallelism turns each dense
// all-reduce into a reduce-scatter and gathers the sequence once before each block instead
// (Mixtral's MoE block keeps its all-reduce), and once more before lm_head.
void check_collectives(models::CausalLM& model, const std::string& plan, const TinySpec& spec) {
  model.reset_cache();
  CommRecorder recorder;
  model.forward_tokens(kPrompt);
  if (world().size() == 1) {  // a mesh of one rank holds every block whole: nothing to move
    CHECK(recorder.calls().empty());
    return;
  }
  const uint64_t blocks = 2 * uint64_t(spec.layers), moe = spec.mixtral() ? uint64_t(spec.layers) : 0;
  if (plan == "auto") {
    CHECK(recorder.count(CollectiveKind::AllReduce) == 1 + blocks);
    CHECK(recorder.count(CollectiveKind::AllGather) == 1);
  } else {
    CHECK(recorder.count(CollectiveKind::AllReduce) == moe);
    CHECK(recorder.count(CollectiveKind::ReduceScatter) == 1 + blocks - moe);
    CHECK(recorder.count(CollectiveKind::AllGather) == 2 + blocks);  // + the final norm's rows for lm_head
  }
  CHECK(recorder.calls().size() == recorder.count(CollectiveKind::AllReduce) +
                                       recorder.count(CollectiveKind::ReduceScatter) +
                                       recorder.count(CollectiveKind::AllGather));
}

// The checkpoint of `spec` loaded unsharded and under each plan; generation compared.
void check_sharded_against_unsharded(const TinySpec& spec) {
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto reference = models::load_unsharded(dir.str(), DType::F32);
  const models::Generation expected = models::generate_greedy(*reference, kPrompt, kNewTokens);
  REQUIRE(expected.prompt_logits.shape() == Shape{int64_t(kPrompt.size()), spec.vocab});
  REQUIRE(expected.new_ids.size() == size_t(kNewTokens));
  CHECK(smallest_top2_gap(expected.prompt_logits) > 1e-3);
  // One more step past the generated ids: the logits of a decode step compared too.
  const Tensor expected_step = reference->forward_tokens({expected.new_ids.back()});

  for (const auto& [plan_name, plan] : plans_for(config)) {
    INFO(spec.architecture << " heads " << spec.heads << "/" << spec.kv_heads << " vocab " << spec.vocab << " tie "
                           << spec.tie << ", plan " << plan_name << ", np " << world().size());
    nn::PlanReport report;
    auto sharded = models::load_sharded(dir.str(), world_line(), plan, DType::F32, &report);
    CHECK(report.unmatched_rules.empty());
    const models::Generation got = models::generate_greedy(*sharded, kPrompt, kNewTokens);
    CHECK(got.prompt_logits.dtype() == DType::F32);
    CHECK(max_abs_diff(got.prompt_logits, expected.prompt_logits) <= 1e-4);
    CHECK(got.new_ids == expected.new_ids);
    CHECK(got.decode_steps == kNewTokens - 1);
    CHECK(sharded->cache_length() == int64_t(kPrompt.size()) + kNewTokens - 1);
    CHECK(max_abs_diff(sharded->forward_tokens({expected.new_ids.back()}), expected_step) <= 1e-4);
    check_collectives(*sharded, plan_name, spec);
  }
}

}  // namespace

TEST_CASE("Llama: uneven vocab, KV heads replicated at np 4", "[models][llama]") {
  check_sharded_against_unsharded(TinySpec{});  // 4 heads, 2 KV heads, vocab 37
}

TEST_CASE("Llama: tied embeddings", "[models][llama]") {
  TinySpec spec;
  spec.tie = true;
  spec.vocab = 40;
  spec.seed = 2;
  check_sharded_against_unsharded(spec);
}

TEST_CASE("Llama: 6 heads (2, 2, 1, 1 at np 4), head_dim from config", "[models][llama]") {
  TinySpec spec;
  spec.hidden = 20;
  spec.heads = 6;
  spec.kv_heads = 3;
  spec.head_dim = 4;  // q_proj [24, 20]: not hidden / heads
  spec.seed = 3;
  check_sharded_against_unsharded(spec);
}

TEST_CASE("attention computes the heads its rank's projections hold, set when the plan is applied", "[models][heads]") {
  TinySpec spec;
  spec.hidden = 20;
  spec.heads = 6;
  spec.kv_heads = 3;
  spec.head_dim = 4;
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  const auto heads_of = [](models::CausalLM& model, int64_t layer) {
    nn::Module* module = model.find(fmt::format("model.layers.{}.self_attn", layer));
    auto* attention = dynamic_cast<models::LlamaAttention*>(module);
    REQUIRE(attention != nullptr);
    return attention->heads_here();
  };
  const nn::HeadRange all_query{0, 6}, all_kv{0, 3};
  auto unsharded = models::load_unsharded(dir.str(), DType::F32);
  auto sharded = models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32);
  // q/k/v gathered to whole outputs, o_proj replicated: every rank computes every head.
  nn::TpPlan gathered = models::auto_tp_plan(config);
  for (nn::TpRule& rule : gathered.rules) {
    if (rule.pattern.ends_with("q_proj") || rule.pattern.ends_with("k_proj") || rule.pattern.ends_with("v_proj"))
      rule.strategy = "colwise_rep";
    if (rule.pattern.ends_with("o_proj")) rule.strategy = "replicate";
  }
  auto whole_heads = models::load_sharded(dir.str(), world_line(), gathered, DType::F32);
  const nn::RankHeads mine = nn::rank_heads({6, 3, 4}, world().size(), world().rank());
  for (int64_t layer = 0; layer < spec.layers; ++layer) {
    CHECK((heads_of(*unsharded, layer).query == all_query && heads_of(*unsharded, layer).kv == all_kv));
    CHECK((heads_of(*whole_heads, layer).query == all_query && heads_of(*whole_heads, layer).kv == all_kv));
    CHECK((heads_of(*sharded, layer).query == mine.query && heads_of(*sharded, layer).kv == mine.kv));
  }
  if (world().size() == 4) {  // 2, 2, 1, 1 query heads; KV head 2 read by ranks 2 and 3
    const std::vector<nn::HeadRange> query = {{0, 2}, {2, 4}, {4, 5}, {5, 6}}, kv = {{0, 1}, {1, 2}, {2, 3}, {2, 3}};
    CHECK(heads_of(*sharded, 0).query == query[size_t(world().rank())]);
    CHECK(heads_of(*sharded, 0).kv == kv[size_t(world().rank())]);
  }
  const Tensor expected = unsharded->forward_tokens(kPrompt);
  CHECK(max_abs_diff(whole_heads->forward_tokens(kPrompt), expected) <= 1e-4);
  CHECK(max_abs_diff(sharded->forward_tokens(kPrompt), expected) <= 1e-4);
}

TEST_CASE("Mixtral: top-2 of 4 experts, uneven intermediate", "[models][mixtral]") {
  TinySpec spec;
  spec.architecture = "MixtralForCausalLM";
  spec.intermediate = 10;  // 4, 4, 2 at np 3; 3, 3, 3, 1 at np 4
  spec.seed = 4;
  check_sharded_against_unsharded(spec);
}

TEST_CASE("the KV cache: incremental logits equal a full recompute", "[models][cache]") {
  SharedDir dir;
  TinySpec spec;
  spec.architecture = "MixtralForCausalLM";
  spec.seed = 5;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto model = models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32);
  const std::vector<int64_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  const Tensor full = model->forward_tokens(tokens);
  model->reset_cache();
  CHECK(model->cache_length() == 0);
  model->reserve_cache(2);  // smaller than needed: the cache grows
  std::vector<Tensor> pieces;
  pieces.push_back(model->forward_tokens({tokens.begin(), tokens.begin() + 4}));
  for (size_t i = 4; i < tokens.size(); ++i) pieces.push_back(model->forward_tokens({tokens[i]}));
  CHECK(model->cache_length() == int64_t(tokens.size()));
  CHECK(max_abs_diff(cat(pieces, 0), full) <= 1e-5);
  // generate_greedy resets the cache first: the same ids twice.
  CHECK(models::generate_greedy(*model, {4, 2}, 3).new_ids == models::generate_greedy(*model, {4, 2}, 3).new_ids);
}

#if defined(__x86_64__)
TEST_CASE("decode steps create no GEMM primitive once the first one ran, in f32 and bf16", "[models][cache]") {
  SharedDir dir;
  TinySpec spec;
  spec.seed = 7;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  for (DType dtype : {DType::F32, DType::BF16}) {
    INFO(dtype_name(dtype));
    auto model = models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), dtype);
    model->forward_tokens(kPrompt);
    model->forward_tokens({3});
    const int64_t created = cpu::onednn_primitives_created();
    for (int64_t id : {5, 8, 13, 21}) model->forward_tokens({id});  // one more key each step
    CHECK(cpu::onednn_primitives_created() == created);
  }
}
#endif

TEST_CASE("bf16: models in bf16 follow the f32 model; bf16 checkpoints load as f32", "[models][bf16]") {
  SharedDir dir;
  TinySpec spec;
  spec.seed = 6;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  const Tensor f32 = models::load_unsharded(dir.str(), DType::F32)->forward_tokens(kPrompt);
  for (const auto& [plan_name, plan] : plans_for(config)) {
    INFO("plan " << plan_name);
    auto model = models::load_sharded(dir.str(), world_line(), plan, DType::BF16);
    CHECK(model->dtype() == DType::BF16);
    CHECK(model->find("model.layers.0.self_attn.q_proj")->parameter("weight").dtype() == DType::BF16);
    const Tensor bf16 = model->forward_tokens(kPrompt);
    CHECK(bf16.dtype() == DType::F32);
    // bf16 keeps 8 bits of mantissa: logits of magnitude ~4 agree to a few hundredths.
    CHECK(max_abs_diff(bf16, f32) < 0.25);
    CHECK(max_abs_diff(bf16, f32) > 0);  // it really ran in bf16
  }

  SharedDir bf16_dir;
  spec.dtype = DType::BF16;
  models_test::write_checkpoint(bf16_dir, spec);
  auto reference = models::load_unsharded(bf16_dir.str(), DType::F32);
  auto sharded = models::load_sharded(bf16_dir.str(), world_line(), models::auto_tp_plan(config), DType::F32);
  CHECK(max_abs_diff(sharded->forward_tokens(kPrompt), reference->forward_tokens(kPrompt)) <= 1e-4);
}

TEST_CASE("LlamaRMSNorm rounds the normalised value to the input dtype before the weight", "[models][norm]") {
  const int64_t hidden = 8;
  models::LlamaRMSNorm norm(hidden, 1e-5, DType::BF16);
  const Tensor x = models_test::uniform({3, hidden}, 11, 2.0, DType::BF16);
  const Tensor w = models_test::uniform({hidden}, 12, 0.3, DType::BF16, 1.0);
  norm.parameter("weight") = w;
  // transformers: weight * (x * rsqrt(mean(x^2) + eps)).to(bf16), the product rounded to bf16.
  const Tensor x64 = x.to(DType::F64);
  const Tensor rstd = rsqrt(add(mean(mul(x64, x64), {-1}, true), 1e-5));
  const Tensor normalised = mul(x64, rstd).to(DType::BF16);
  const Tensor expected = mul(w.to(DType::F64), normalised.to(DType::F64)).to(DType::BF16);
  CHECK(equal(norm(x).tensor(), expected));
}

TEST_CASE("KVCache appends in place within its capacity and keeps the contents when it grows", "[models][cache]") {
  models::KVCache cache;
  cache.reserve(6);
  const Tensor k = models_test::uniform({4, 2, 3}, 21, 1.0, DType::F32),
               v = models_test::uniform({4, 2, 3}, 22, 1.0, DType::F32);
  auto [keys, values] = cache.append(k, v);
  CHECK(cache.capacity() == 6);
  const void* buffer = keys.data_ptr();
  const Tensor step = models_test::uniform({1, 2, 3}, 23, 1.0, DType::F32);
  for (int i = 0; i < 2; ++i) std::tie(keys, values) = cache.append(step, step);
  CHECK(keys.data_ptr() == buffer);  // decode steps within the reserve: no reallocation
  CHECK(cache.length() == 6);
  std::tie(keys, values) = cache.append(step, step);  // past the reserve: doubles
  CHECK(cache.capacity() == 12);
  CHECK(keys.shape() == Shape{7, 2, 3});
  CHECK(equal(keys.narrow(0, 0, 4), k));
  CHECK(equal(values.narrow(0, 0, 4), v));
  CHECK(equal(values.narrow(0, 6, 1), step));
  const Tensor other_heads = models_test::uniform({1, 3, 3}, 24, 1.0, DType::F32);
  CHECK_THROWS_AS(cache.append(other_heads, other_heads), ShapeError);
  CHECK_THROWS_AS(cache.append(step, other_heads), ShapeError);
  cache.truncate(5);  // what a failed forward does: the later positions are forgotten
  std::tie(keys, values) = cache.append(k, v);
  CHECK(equal(keys.narrow(0, 5, 4), k));
  CHECK(keys.size(0) == 9);
  CHECK_THROWS_AS(cache.truncate(10), ValueError);
  cache.clear();
  CHECK(cache.length() == 0);
  CHECK(cache.capacity() == 12);
}
