// Training gradients of the models (models/causal_lm.hpp, models/activation_checkpoint.hpp):
// - a Llama and a Mixtral decoder layer gradchecked in f64 against finite differences (input and
//   every parameter, two sequences in one batch);
// - the loss (cross_entropy, vocab-parallel on vocab-sharded logits) and EVERY parameter's
//   gradient of a tied Llama (uneven vocab 37, 6 query heads over 2 KV heads: uneven heads and
//   replicated KV heads at np 4) and of a Mixtral (intermediate 22) under the auto,
//   sequence-parallel and vocab-parallel plans at np 1..4, against the unsharded model, within
//   1e-5 relative in f32;
// - activation checkpointing gives bit-identical gradients, replays dropout's draws, and keeps
//   less for the backward (the bytes held after the forward, with and without, printed by rank 0).
#include "test_models_util.hpp"

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "io/tensor_source.hpp"
#include "models/activation_checkpoint.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "nn/strategy.hpp"
#include "tensor/ops.hpp"

#include <malloc.h>

#include <cstdio>
#include <map>

using namespace dtensor;
namespace ag = dtensor::autograd;
using models_test::mixtral;
using models_test::SharedDir;
using models_test::tied_llama;
using models_test::TinySpec;
using models_test::training_plans;
using models_test::world_line;

namespace {

const Tensor kIds = Tensor::from_vector<int64_t>({3, 17, 0, 36, 5, 22, 9, 11, 30, 1, 1, 28}, {2, 6});
const std::vector<int64_t> kLabels = {17, 0, 36, 5, 22, 4, 11, 30, 1, 1, 28, 13};

// The mean token cross-entropy of a step, backpropagated: vocab-parallel on sharded logits.
double backward_of_loss(const nn::Value& logits) {
  const Tensor labels = Tensor::from_vector(kLabels, {int64_t(kLabels.size())});
  if (logits.is_distributed()) {
    const DTensor loss = ag::cross_entropy(logits.dtensor(), labels);
    ag::backward(loss);
    return loss.local_tensor().item<double>();
  }
  const Tensor loss = ag::cross_entropy(logits.tensor(), labels);
  ag::backward(loss);
  return loss.item<double>();
}

Tensor gradient_of(const nn::Value& parameter) {
  return parameter.is_distributed() ? nn::Value(ag::grad(parameter.dtensor())).local() : ag::grad(parameter.tensor());
}

struct Step {
  double loss = 0;
  std::map<std::string, Tensor> grads;  // this rank's block of each loaded parameter's gradient
};

Step train_step(models::CausalLM& model) {
  model.requires_grad_();
  Step step{backward_of_loss(model.training_logits(kIds)), {}};
  for (const auto& [name, value] : model.named_parameters()) {
    if (value->defined()) step.grads[name] = gradient_of(*value);
  }
  return step;
}

// This rank's block of a whole gradient, as the module's strategy partitions the parameter.
Tensor expected_block(models::CausalLM& model, const std::string& name, const Tensor& whole, const DeviceMesh& mesh) {
  const size_t dot = name.rfind('.');
  const nn::Module* module = model.find(name.substr(0, dot));
  REQUIRE(module != nullptr);
  if (module->strategy() == nullptr) return whole;
  return module->strategy()->partition(*module, name.substr(dot + 1), io::tensor_source(whole), mesh).local();
}

double relative_error(const Tensor& got, const Tensor& expected) {
  const double scale = max_abs_diff(expected, Tensor::zeros(expected.shape(), expected.dtype()));
  return max_abs_diff(got, expected) / std::max(scale, 1e-30);
}

void check_gradients_against_unsharded(const TinySpec& spec) {
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  const Step expected = train_step(*models::load_unsharded(dir.str(), DType::F32));
  CHECK(expected.grads.count("lm_head.weight") == size_t(spec.tie ? 0 : 1));
  for (const auto& [plan_name, plan] : training_plans(config)) {
    INFO(spec.architecture << ", plan " << plan_name << ", np " << world().size());
    auto model = models::load_sharded(dir.str(), world_line(), plan, DType::F32);
    const Step got = train_step(*model);
    CHECK(std::abs(got.loss - expected.loss) <= 1e-5 * std::abs(expected.loss));
    CHECK(got.grads.size() == expected.grads.size());
    for (const auto& [name, grad] : got.grads) {
      INFO("parameter " << name);
      REQUIRE(grad.defined());
      const Tensor block = expected_block(*model, name, expected.grads.at(name), world_line());
      REQUIRE(grad.shape() == block.shape());
      CHECK(relative_error(grad, block) <= 1e-5);
    }
  }
}

// Every parameter's gradient of one step with and without checkpointing, bit for bit.
void check_checkpointing_is_exact(const TinySpec& spec) {
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  std::vector<std::pair<std::string, nn::TpPlan>> plans = {{"unsharded", nn::TpPlan{}}};
  for (auto& plan : training_plans(config)) plans.push_back(std::move(plan));
  for (const auto& [plan_name, plan] : plans) {
    INFO(spec.architecture << ", plan " << plan_name << ", np " << world().size());
    auto load = [&] {
      return plan.rules.empty() ? models::load_unsharded(dir.str(), DType::F32)
                                : models::load_sharded(dir.str(), world_line(), plan, DType::F32);
    };
    auto plain = load(), checkpointed = load();
    checkpointed->set_activation_checkpointing(true);
    CHECK(checkpointed->activation_checkpointing());
    const Step expected = train_step(*plain), got = train_step(*checkpointed);
    CHECK(got.loss == expected.loss);
    REQUIRE(got.grads.size() == expected.grads.size());
    for (const auto& [name, grad] : got.grads) {
      INFO("parameter " << name);
      CHECK(equal(grad, expected.grads.at(name)));
    }
  }
}

// One decoder layer in f64 on two sequences of three tokens: gradcheck of the output against the
// input and every parameter (each one a gradcheck input that the function installs in the layer).
void gradcheck_layer(const TinySpec& spec) {
  const models::HFConfig config = models::parse_hf_config(models_test::config_json(spec));
  models::DecoderLayer layer(config, DType::F64);
  std::vector<nn::Value*> parameters;
  std::vector<Tensor> inputs = {models_test::uniform({6, spec.hidden}, 5, 1.0, DType::F64)};
  uint64_t seed = 100;
  for (const auto& [name, value] : layer.named_parameters()) {
    const bool norm = name.ends_with("layernorm.weight");
    const size_t dot = name.rfind('.');
    const Shape& shape = layer.find(name.substr(0, dot))->parameter_shape(name.substr(dot + 1));
    inputs.push_back(models_test::uniform(shape, seed++, norm ? 0.1 : 0.5, DType::F64, norm ? 1.0 : 0.0));
    parameters.push_back(value);
  }
  const RotaryTables rotary = rotary_tables({0, 1, 2, 0, 1, 2}, config.head_dim, config.rope_theta, DType::F64);
  const auto run = [&](const std::vector<Tensor>& in) {
    for (size_t i = 0; i < parameters.size(); ++i) *parameters[i] = in[i + 1];
    return layer(in[0], {0, rotary, nullptr, /*sequences=*/2}).tensor();
  };
  const ag::GradcheckResult result = ag::gradcheck(run, inputs);
  INFO(result.report);
  CHECK(result.passed);
  CHECK(result.elements_checked > 6 * spec.hidden);
}

#if defined(__SANITIZE_ADDRESS__)
// The sanitizers' allocator statistics (sanitizer/allocator_interface.h, which GCC does not ship).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

// Bytes the heap has handed out and not taken back (tensors' storage comes from there): glibc's
// count, or that of AddressSanitizer's allocator where it replaces glibc's (mallinfo2 then says 0).
size_t heap_bytes_in_use() {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
#endif
}

// The bytes a forward leaves held for the backward (the graph's saved tensors and the logits), and
// the loss, of one step of a 4-layer Llama on 4 sequences of 64 tokens.
std::pair<size_t, double> bytes_held_after_forward(const SharedDir& dir, bool checkpointing) {
  auto model = models::load_unsharded(dir.str(), DType::F32);
  model->requires_grad_();
  model->set_activation_checkpointing(checkpointing);
  const Tensor ids = random({4, 64}, DType::I64, {.seed = 9, .a = 0, .b = 64});
  const size_t before = heap_bytes_in_use();
  const Tensor logits = model->training_logits(ids).tensor();
  const Tensor loss = ag::mean(ag::mul(logits, logits));
  const size_t held = heap_bytes_in_use() - before;
  ag::backward(loss);
  return {held, loss.item<double>()};
}

}  // namespace

TEST_CASE("activation checkpointing keeps less for the backward", "[models][training][checkpoint][memory]") {
  TinySpec spec;
  spec.hidden = 128;
  spec.intermediate = 256;
  spec.layers = 4;
  spec.heads = 8;
  spec.kv_heads = 4;
  spec.vocab = 64;
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const auto [without, loss] = bytes_held_after_forward(dir, false);
  const auto [with, loss_checkpointed] = bytes_held_after_forward(dir, true);
  CHECK(loss_checkpointed == loss);
  CHECK(with < without);
  if (world().rank() == 0) {
    std::printf(
        "activation checkpointing, 4 layers, hidden 128, 4 x 64 tokens: held after forward %.2f MiB, "
        "without %.2f MiB, ratio %.3f\n",
        double(with) / (1 << 20), double(without) / (1 << 20), double(with) / double(without));
  }
}

TEST_CASE("a decoder layer's gradients match finite differences in f64", "[models][training][gradcheck]") {
  TinySpec spec;
  spec.hidden = 8;
  spec.heads = 2;
  spec.kv_heads = 1;
  spec.intermediate = 6;
  SECTION("Llama") { gradcheck_layer(spec); }
  SECTION("Mixtral, top-2 of 3 experts") {
    spec.architecture = "MixtralForCausalLM";
    spec.experts = 3;
    gradcheck_layer(spec);
  }
}

TEST_CASE("model gradients under every plan equal the unsharded model's", "[models][training][gradients]") {
  SECTION("tied Llama, 6 heads / 2 KV heads, vocab 37") { check_gradients_against_unsharded(tied_llama()); }
  SECTION("Mixtral, intermediate 22") { check_gradients_against_unsharded(mixtral()); }
}

TEST_CASE("activation checkpointing: the same gradients bit for bit", "[models][training][checkpoint]") {
  SECTION("tied Llama") { check_checkpointing_is_exact(tied_llama()); }
  SECTION("Mixtral") { check_checkpointing_is_exact(mixtral()); }
}

namespace {

// Linear then Dropout, two forwards before one backward, checkpointed or not: the weight's
// gradient (and the number of draws left on the dropout) after the backward.
std::pair<Tensor, uint64_t> dropout_block_gradient(bool checkpointing) {
  auto block = std::make_shared<nn::Module>("Block");
  auto linear = block->add_module("linear", std::make_shared<nn::Linear>(8, 6, true, DType::F64));
  auto dropout = block->add_module("dropout", std::make_shared<nn::Dropout>(0.5, /*seed=*/11));
  linear->parameter("weight") = models_test::uniform({6, 8}, 1, 0.5, DType::F64);
  linear->parameter("bias") = models_test::uniform({6}, 2, 0.5, DType::F64);
  block->requires_grad_();
  const models::CheckpointBody body = [linear, dropout](const nn::Value& x) { return (*dropout)((*linear)(x)); };
  Tensor loss;
  for (uint64_t micro_batch = 0; micro_batch < 2; ++micro_batch) {
    const Tensor x = models_test::uniform({5, 8}, 10 + micro_batch, 1.0, DType::F64);
    const Tensor y = (checkpointing ? models::checkpointed(x, *block, body) : body(x)).tensor();
    const Tensor square = ag::sum(ag::mul(y, y));
    loss = loss.defined() ? ag::add(loss, square) : square;
  }
  ag::backward(loss);
  return {ag::grad(linear->parameter("weight").tensor()), dropout->random_calls()};
}

}  // namespace

TEST_CASE("activation checkpointing replays dropout's draws", "[models][training][checkpoint]") {
  const auto [expected, expected_calls] = dropout_block_gradient(false);
  const auto [got, calls] = dropout_block_gradient(true);
  CHECK(equal(got, expected));
  CHECK(calls == 2);
  CHECK(expected_calls == 2);
}

TEST_CASE("Experts::route's gradients match finite differences, in one batch or per expert",
          "[models][training][gradcheck]") {
  nn::Experts experts(/*experts=*/4, /*hidden=*/6, /*intermediate=*/5, DType::F64);
  const std::vector<Tensor> inputs = {
      models_test::uniform({3, 6}, 1, 1.0, DType::F64), models_test::uniform({4, 10, 6}, 2, 0.5, DType::F64),
      models_test::uniform({4, 6, 5}, 3, 0.5, DType::F64), models_test::uniform({3, 2}, 4, 0.2, DType::F64, 0.5)};
  // Every expert of the range has tokens (one padded batch), or experts 1 and 2 have none (one
  // product per expert with tokens).
  for (const std::vector<int64_t>& ids :
       {std::vector<int64_t>{0, 1, 2, 3, 1, 2}, std::vector<int64_t>{0, 3, 3, 0, 0, 3}}) {
    const Tensor expert_ids = Tensor::from_vector(ids, {3, 2});
    const auto run = [&](const std::vector<Tensor>& in) {
      experts.parameter("gate_up") = in[1];
      experts.parameter("down") = in[2];
      return experts.route(in[0], expert_ids, in[3]).tensor();
    };
    const ag::GradcheckResult result = ag::gradcheck(run, inputs);
    INFO("expert ids " << ids[0] << ids[1] << ids[2] << ids[3] << ids[4] << ids[5] << ": " << result.report);
    CHECK(result.passed);
  }
}
