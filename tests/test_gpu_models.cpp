// Llama and Mixtral (models/causal_lm.hpp) on a GPU: loaded sharded over the world (np 1 and 2,
// the ranks sharing one GPU through MPI staging), moved with Module::to, against the same
// checkpoint run unsharded on the CPU: prompt logits within 1e-4 (f32), the same greedy ids,
// and logits that stay on the GPU. Also a model moved mid-sequence (its KV cache follows), bf16
// weights, and Dropout on GPU tensors.
#include "gpu_test_util.hpp"
#include "test_models_util.hpp"

#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "nn/layers.hpp"

using models_test::SharedDir;
using models_test::TinySpec;
using models_test::world_line;

namespace {

const std::vector<int64_t> kPrompt = {3, 17, 0, 36, 5, 22, 9, 11, 30};
constexpr int64_t kNewTokens = 5;

std::shared_ptr<models::CausalLM> load_on_gpu(const std::string& dir, const nn::TpPlan& plan, DType dtype) {
  auto model = models::load_sharded(dir, world_line(), plan, dtype);
  model->to(kGpu);
  REQUIRE(model->device() == kGpu);
  return model;
}

void check_against_cpu(const TinySpec& spec) {
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto reference = models::load_unsharded(dir.str(), DType::F32);
  const models::Generation expected = models::generate_greedy(*reference, kPrompt, kNewTokens);
  const std::vector<std::pair<const char*, nn::TpPlan>> plans = {
      {"auto", models::auto_tp_plan(config)}, {"sequence parallel", models::sequence_parallel_tp_plan(config)}};
  for (const auto& [name, plan] : plans) {
    INFO(spec.architecture << " plan " << name << " on " << world().size() << " ranks");
    auto model = load_on_gpu(dir.str(), plan, DType::F32);
    const models::Generation got = models::generate_greedy(*model, kPrompt, kNewTokens);
    REQUIRE(got.prompt_logits.device() == kGpu);
    const Tensor logits = got.prompt_logits.to(Device::cpu());
    INFO("max |gpu - cpu| = " << max_abs_diff(logits, expected.prompt_logits));
    CHECK(allclose(logits, expected.prompt_logits, 1e-4, 1e-4));
    CHECK(got.new_ids == expected.new_ids);
  }
}

}  // namespace

TEST_CASE("Llama on the GPU matches the CPU model (grouped-query, uneven vocab)") {
  TinySpec spec;
  spec.heads = 4, spec.kv_heads = 2, spec.vocab = 37;
  check_against_cpu(spec);
}

TEST_CASE("Llama with tied embeddings and head_dim from config on the GPU") {
  TinySpec spec;
  spec.tie = true, spec.heads = 6, spec.kv_heads = 2, spec.head_dim = 8, spec.hidden = 24;
  check_against_cpu(spec);
}

TEST_CASE("Mixtral top-2 of 4 experts on the GPU") {
  TinySpec spec;
  spec.architecture = "MixtralForCausalLM";
  spec.intermediate = 20;
  check_against_cpu(spec);
}

TEST_CASE("a model moved to the GPU mid-sequence continues from its KV cache") {
  SharedDir dir;
  models_test::write_checkpoint(dir, TinySpec{});
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto cpu_model = models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32);
  auto moved = models::load_sharded(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32);
  cpu_model->forward_tokens(kPrompt);
  moved->forward_tokens(kPrompt);
  moved->to(kGpu);
  const Tensor expected = cpu_model->forward_tokens({7, 2});
  const Tensor got = moved->forward_tokens({7, 2});
  REQUIRE(got.device() == kGpu);
  INFO("max |gpu - cpu| = " << max_abs_diff(got.to(Device::cpu()), expected));
  CHECK(allclose(got.to(Device::cpu()), expected, 1e-4, 1e-4));
}

TEST_CASE("bf16 Llama on the GPU stays close to the f32 CPU model") {
  SharedDir dir;
  TinySpec spec;
  spec.dtype = DType::BF16;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto reference = models::load_unsharded(dir.str(), DType::F32);
  const Tensor expected = reference->forward_tokens(kPrompt);
  auto model = load_on_gpu(dir.str(), models::auto_tp_plan(config), DType::BF16);
  const Tensor got = model->forward_tokens(kPrompt).to(Device::cpu());
  // bf16 activations (8 mantissa bits) through 2 layers against f32: the logits (std ~4) agree
  // to a few hundredths, as the CPU bf16 model does (tests/test_models.cpp).
  INFO("max |bf16 gpu - f32 cpu| = " << max_abs_diff(got, expected));
  CHECK(max_abs_diff(got, expected) < 0.25);
}

TEST_CASE("Dropout drops the same elements of a GPU tensor as of its CPU copy") {
  const Tensor x = random(Shape{64, 32}, DType::F32, RandomOptions{.seed = 5});
  nn::Dropout on_cpu(0.3, 11), on_gpu(0.3, 11);
  const Tensor expected = on_cpu(nn::Value(x)).tensor();
  const Tensor got = on_gpu(nn::Value(x.to(kGpu))).tensor();
  REQUIRE(got.device() == kGpu);
  CHECK(equal(got.to(Device::cpu()), expected));
}
