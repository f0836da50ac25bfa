// Bad input to the models (docs/design.md section 9): typed errors naming the offending tensor, module,
// key or id, raised alike on every rank (no rank left waiting).
#include "test_models_util.hpp"

#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "tests/skip.hpp"

using namespace dtensor;
using models_test::SharedDir;
using models_test::TinySpec;
using models_test::world_line;

namespace {

// The checkpoint of `spec` with `edit` applied to its tensors.
void write_edited(const SharedDir& dir, const TinySpec& spec, const std::function<void(io::NamedTensors&)>& edit) {
  io::NamedTensors tensors = models_test::tiny_weights(spec);
  edit(tensors);
  models_test::write_checkpoint(dir, models_test::config_json(spec), tensors);
}

void drop(io::NamedTensors& tensors, const std::string& name) {
  auto it = std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.first == name; });
  REQUIRE(it != tensors.end());
  tensors.erase(it);
}

void replace(io::NamedTensors& tensors, const std::string& name, const Tensor& value) {
  for (auto& [n, t] : tensors)
    if (n == name) t = value;
}

// Loading `dir` sharded under the auto plan and unsharded both throw E mentioning `needle`.
template <typename E>
void check_load_fails(const SharedDir& dir, const std::string& needle) {
  const models::HFConfig config = models::load_hf_config(dir.str());
  CHECK_THROWS_AS(models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32), E);
  CHECK_THROWS_WITH(models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32),
                    Catch::Contains(needle));
  CHECK_THROWS_WITH(models::load_unsharded(dir.str(), DType::F32), Catch::Contains(needle));
}

}  // namespace

TEST_CASE("a checkpoint missing a tensor names it", "[models][errors]") {
  SharedDir llama;
  write_edited(llama, TinySpec{}, [](io::NamedTensors& t) { drop(t, "model.layers.1.mlp.up_proj.weight"); });
  check_load_fails<ValueError>(llama, "model.layers.1.mlp.up_proj.weight");

  TinySpec mixtral;
  mixtral.architecture = "MixtralForCausalLM";
  SharedDir moe;
  write_edited(moe, mixtral,
               [](io::NamedTensors& t) { drop(t, "model.layers.0.block_sparse_moe.experts.2.w3.weight"); });
  check_load_fails<ValueError>(moe, "model.layers.0.block_sparse_moe.experts.2.w3.weight");

  // Untied: lm_head.weight is required.
  SharedDir untied;
  write_edited(untied, TinySpec{}, [](io::NamedTensors& t) { drop(t, "lm_head.weight"); });
  check_load_fails<ValueError>(untied, "lm_head.weight");
}

TEST_CASE("a checkpoint tensor of the wrong shape names it", "[models][errors]") {
  TinySpec spec;
  SharedDir llama;
  write_edited(llama, spec, [&](io::NamedTensors& t) {
    replace(t, "model.layers.0.self_attn.k_proj.weight",
            Tensor::zeros({spec.kv_heads * spec.dim() + 1, spec.hidden}, DType::F32));
  });
  check_load_fails<ShapeError>(llama, "model.layers.0.self_attn.k_proj.weight");

  TinySpec mixtral;
  mixtral.architecture = "MixtralForCausalLM";
  SharedDir moe;
  write_edited(moe, mixtral, [&](io::NamedTensors& t) {
    replace(t, "model.layers.1.block_sparse_moe.experts.3.w2.weight",
            Tensor::zeros({mixtral.intermediate, mixtral.hidden}, DType::F32));
  });
  check_load_fails<ShapeError>(moe, "model.layers.1.block_sparse_moe.experts.3.w2.weight");
}

TEST_CASE("config.json with an unknown architecture or inconsistent dims is refused at load", "[models][errors]") {
  TinySpec spec;
  SharedDir unknown;
  std::string config = models_test::config_json(spec);
  config.replace(config.find("LlamaForCausalLM"), 16, "GPT2LMHeadModel");
  models_test::write_checkpoint(unknown, config, models_test::tiny_weights(spec));
  CHECK_THROWS_AS(models::load_unsharded(unknown.str(), DType::F32), ValueError);
  CHECK_THROWS_WITH(models::load_unsharded(unknown.str(), DType::F32), Catch::Contains("GPT2LMHeadModel"));

  SharedDir inconsistent;
  TinySpec odd = spec;
  odd.heads = 3;  // 16 hidden over 3 heads, no head_dim; 3 heads over 2 KV heads
  models_test::write_checkpoint(inconsistent, models_test::config_json(odd), models_test::tiny_weights(spec));
  CHECK_THROWS_AS(models::load_unsharded(inconsistent.str(), DType::F32), ShapeError);
  CHECK_THROWS_WITH(models::load_unsharded(inconsistent.str(), DType::F32), Catch::Contains("num_attention_heads"));
}

TEST_CASE("prompt ids outside the vocab are refused, naming the id", "[models][errors]") {
  SharedDir dir;
  TinySpec spec;
  models_test::write_checkpoint(dir, spec);
  auto model = models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(models::load_hf_config(dir.str())),
                                    DType::F32);
  CHECK_THROWS_AS(model->forward_tokens({1, 37, 2}), ValueError);
  CHECK_THROWS_WITH(model->forward_tokens({1, 37, 2}), Catch::Contains("id 37") && Catch::Contains("[0, 37)"));
  CHECK_THROWS_WITH(model->forward_tokens({-4}), Catch::Contains("id -4"));
  CHECK_THROWS_AS(model->forward_tokens({}), ValueError);
  CHECK_THROWS_WITH(models::generate_greedy(*model, {0, 99}, 2), Catch::Contains("id 99"));
  CHECK(model->cache_length() == 0);                                       // nothing ran
  CHECK(models::generate_greedy(*model, {0, 36}, 2).new_ids.size() == 2);  // the model still works
}

TEST_CASE("more TP ranks than attention heads are refused, naming the module", "[models][errors]") {
  SharedDir dir;
  TinySpec spec;
  spec.heads = 2;
  spec.kv_heads = 1;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  if (world().size() <= 2) {
    auto model = models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32);
    CHECK(models::generate_greedy(*model, {1, 2, 3}, 2).new_ids.size() == 2);
    return;
  }
  CHECK_THROWS_AS(models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32), ValueError);
  CHECK_THROWS_WITH(models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32),
                    Catch::Contains("model.layers.0.self_attn.q_proj") && Catch::Contains("2 query heads"));
}

TEST_CASE("a model needs a known architecture and a floating dtype", "[models][errors]") {
  models::HFConfig config = models::parse_hf_config(models_test::config_json(TinySpec{}));
  CHECK_THROWS_AS(models::CausalLM(config, DType::I32), DTypeError);
  config.architecture = "MistralForCausalLM";
  CHECK_THROWS_WITH(models::CausalLM(config, DType::F32), Catch::Contains("MistralForCausalLM"));
}

TEST_CASE("a sequence-parallel plan whose embedding does not split the sequence is refused", "[models][errors]") {
  if (world().size() == 1) SKIP_TEST("on one rank a plain tensor is the whole sequence: nothing to refuse");
  SharedDir dir;
  models_test::write_checkpoint(dir, TinySpec{});
  const models::HFConfig config = models::load_hf_config(dir.str());
  nn::TpPlan plan = models::sequence_parallel_tp_plan(config);
  for (nn::TpRule& rule : plan.rules)
    if (rule.pattern == "model.embed_tokens") rule.strategy = "rowwise";  // plain, whole output
  auto model = models::load_sharded(dir.str(), world_line(), plan, DType::F32);
  CHECK_THROWS_WITH(model->forward_tokens({1, 2, 3}), Catch::Contains("rowwise_to_sequence"));
}

TEST_CASE("q, k and v projections that split differently are refused when the plan is applied", "[models][errors]") {
  SharedDir dir;
  models_test::write_checkpoint(dir, TinySpec{});
  const models::HFConfig config = models::load_hf_config(dir.str());
  nn::TpPlan plan = models::auto_tp_plan(config);
  for (nn::TpRule& rule : plan.rules)
    if (rule.pattern.ends_with("k_proj")) rule.strategy = "colwise_rep";  // whole keys beside this rank's queries
  CHECK_THROWS_AS(models::load_sharded(dir.str(), world_line(), plan, DType::F32), ValueError);
  CHECK_THROWS_WITH(models::load_sharded(dir.str(), world_line(), plan, DType::F32),
                    Catch::Contains("model.layers.0.self_attn") && Catch::Contains("k_proj"));
}

TEST_CASE("attention checks its positions, rotary tables and KV cache against each other", "[models][errors]") {
  const models::HFConfig config = models::parse_hf_config(models_test::config_json(TinySpec{}));
  models::LlamaAttention attention(config, DType::F32);
  const Tensor hidden = Tensor::zeros({3, config.hidden_size}, DType::F32);
  const RotaryTables rotary = rotary_tables({2, 3, 4}, config.head_dim, config.rope_theta, DType::F32);
  models::KVCache empty;
  // The tokens start at position 2, but the cache holds no position before them.
  CHECK_THROWS_AS(attention(hidden, {2, rotary, &empty}), ValueError);
  CHECK_THROWS_WITH(attention(hidden, {2, rotary, &empty}),
                    Catch::Contains("holds 0 positions") && Catch::Contains("start at position 2"));
  // Three tokens, the tables of two positions.
  const RotaryTables two = rotary_tables({0, 1}, config.head_dim, config.rope_theta, DType::F32);
  CHECK_THROWS_WITH(attention(hidden, {0, two, &empty}), Catch::Contains("got 3 positions for a forward of 2 tokens"));
  CHECK(empty.length() == 0);
  // Called as a module of one tensor, it names itself: it needs its other inputs.
  nn::Module& as_module = attention;
  CHECK_THROWS_WITH(as_module(hidden), Catch::Contains("LlamaAttention") && Catch::Contains("forward of one tensor"));
}

TEST_CASE("tied embeddings laid out so that one cannot serve as the other are refused when loading",
          "[models][errors][training]") {
  TinySpec spec;
  spec.tie = true;
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  nn::TpPlan plan = models::auto_tp_plan(models::load_hf_config(dir.str()));
  for (nn::TpRule& rule : plan.rules)
    if (rule.pattern == "model.embed_tokens") rule.strategy = "local_rowwise";  // a plain block beside a DTensor
  CHECK_THROWS_AS(models::load_sharded(dir.str(), world_line(), plan, DType::F32), ValueError);
  CHECK_THROWS_WITH(models::load_sharded(dir.str(), world_line(), plan, DType::F32),
                    Catch::Contains("tie_word_embeddings") && Catch::Contains("model.embed_tokens.weight") &&
                        Catch::Contains("lm_head.weight"));
}
