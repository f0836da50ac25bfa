// Training a model with tied word embeddings through named_parameters() (nn/module.hpp,
// models/causal_lm.hpp): the tied weight is listed once, as model.embed_tokens.weight; its gradient
// is the sum of the embedding's and lm_head's gradients of the same model untied (a checkpoint with
// lm_head.weight a copy of the embedding); AdamW's first step on it is torch's update written by
// hand; and AdamW with gradient clipping over named_parameters() of the tied model under the
// auto, sequence-parallel and vocab-parallel plans at np 1..4 takes the unsharded model's steps.
#include "test_models_util.hpp"

#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "io/tensor_source.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "nn/strategy.hpp"
#include "optim/optim.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <cmath>
#include <map>

using namespace dtensor;
namespace ag = dtensor::autograd;
using models_test::SharedDir;
using models_test::tied_llama;
using models_test::TinySpec;
using models_test::training_plans;
using models_test::world_line;

namespace {

const Tensor kIds = Tensor::from_vector<int64_t>({3, 17, 0, 36, 5, 22, 9, 11, 30, 1, 1, 28}, {2, 6});
const Tensor kLabels = Tensor::from_vector<int64_t>({17, 0, 36, 5, 22, 4, 11, 30, 1, 1, 28, 13}, {12});
constexpr const char* kEmbedding = "model.embed_tokens.weight";
constexpr const char* kHead = "lm_head.weight";
const optim::AdamWOptions kAdamW = {.lr = 1e-2, .eps = 1e-5, .weight_decay = 0.1};

// The mean token cross-entropy of one batch, backpropagated (vocab-parallel on sharded logits).
double loss_and_backward(models::CausalLM& model) {
  const nn::Value logits = model.training_logits(kIds);
  if (logits.is_distributed()) {
    const DTensor loss = ag::cross_entropy(logits.dtensor(), kLabels);
    ag::backward(loss);
    return loss.local_tensor().item<double>();
  }
  const Tensor loss = ag::cross_entropy(logits.tensor(), kLabels);
  ag::backward(loss);
  return loss.item<double>();
}

Tensor grad_of(const nn::Value& p) {
  return p.is_distributed() ? ag::grad(p.dtensor()).full_tensor() : ag::grad(p.tensor());
}

std::map<std::string, Tensor> copies(models::CausalLM& model) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, value] : model.named_parameters()) out[name] = value->local().clone();
  return out;
}

// This rank's block of a whole parameter, as the module's strategy partitions it.
Tensor expected_block(models::CausalLM& model, const std::string& name, const Tensor& whole) {
  const size_t dot = name.rfind('.');
  const nn::Module* module = model.find(name.substr(0, dot));
  REQUIRE(module != nullptr);
  if (module->strategy() == nullptr) return whole;
  return module->strategy()->partition(*module, name.substr(dot + 1), io::tensor_source(whole), world_line()).local();
}

nn::Value& parameter(models::CausalLM& model, const std::string& name) {
  const auto parameters = model.named_parameters();
  const auto found = std::find_if(parameters.begin(), parameters.end(), [&](const auto& p) { return p.first == name; });
  REQUIRE(found != parameters.end());
  return *found->second;
}

double relative_error(const Tensor& got, const Tensor& expected) {
  const double scale = max_abs_diff(expected, Tensor::zeros(expected.shape(), expected.dtype()));
  return max_abs_diff(got, expected) / std::max(scale, 1e-30);
}

// The tied checkpoint, and the same weights untied: lm_head.weight a copy of the embedding.
struct TiedAndUntied {
  SharedDir tied, untied;
  TiedAndUntied() {
    const TinySpec spec = tied_llama();
    io::NamedTensors weights = models_test::tiny_weights(spec);
    models_test::write_checkpoint(tied, models_test::config_json(spec), weights);
    const auto embedding =
        std::find_if(weights.begin(), weights.end(), [](const auto& t) { return t.first == kEmbedding; });
    weights.emplace_back(kHead, embedding->second.clone());
    TinySpec untied_spec = spec;
    untied_spec.tie = false;
    models_test::write_checkpoint(untied, models_test::config_json(untied_spec), weights);
  }
};

// Three AdamW steps with clipping over named_parameters(); the losses, then the parameters.
std::vector<double> train_three_steps(models::CausalLM& model) {
  model.requires_grad_();
  optim::AdamW optimizer(model.named_parameters(), kAdamW);
  std::vector<double> losses;
  for (int step = 0; step < 3; ++step) {
    losses.push_back(loss_and_backward(model));
    optim::clip_grad_norm(model, model.named_parameters(), 0.5);
    optimizer.step();
    optimizer.zero_grad();
  }
  return losses;
}

}  // namespace

TEST_CASE("a tied model lists its tied weight once, under the checkpoint's name", "[models][training][tied]") {
  TiedAndUntied dirs;
  auto tied = models::load_unsharded(dirs.tied.str(), DType::F32);
  auto untied = models::load_unsharded(dirs.untied.str(), DType::F32);
  const auto tied_parameters = tied->named_parameters(), untied_parameters = untied->named_parameters();
  CHECK(tied_parameters.size() + 1 == untied_parameters.size());
  std::vector<std::string> names;
  for (const auto& [name, value] : tied_parameters) {
    INFO("parameter " << name);
    CHECK(value->defined());
    names.push_back(name);
  }
  CHECK(std::count(names.begin(), names.end(), kEmbedding) == 1);
  CHECK(std::count(names.begin(), names.end(), kHead) == 0);
  // Still declared: the plan and the loader see it.
  CHECK(tied->find("lm_head")->has_parameter("weight"));
  CHECK(tied->find("lm_head")->parameter_borrowed("weight"));
  CHECK_FALSE(untied->find("lm_head")->parameter_borrowed("weight"));
}

TEST_CASE("a tied embedding's gradient sums both uses, and AdamW steps it as torch does", "[models][training][tied]") {
  TiedAndUntied dirs;
  auto untied = models::load_unsharded(dirs.untied.str(), DType::F32);
  untied->requires_grad_();
  const double untied_loss = loss_and_backward(*untied);
  const Tensor both_uses = add(grad_of(parameter(*untied, kEmbedding)), grad_of(parameter(*untied, kHead)));

  auto tied = models::load_unsharded(dirs.tied.str(), DType::F32);
  tied->requires_grad_();
  optim::AdamW optimizer(tied->named_parameters(), kAdamW);
  CHECK(std::abs(loss_and_backward(*tied) - untied_loss) <= 1e-6 * std::abs(untied_loss));
  nn::Value& embedding = parameter(*tied, kEmbedding);
  const Tensor gradient = grad_of(embedding);
  CHECK(relative_error(gradient, both_uses) <= 1e-5);

  // torch's first AdamW update: m and v bias-corrected are g and g^2, so p -= lr * g / (|g| + eps).
  const std::vector<float> before = embedding.tensor().to_vector<float>(), g = gradient.to_vector<float>();
  optimizer.step();
  CHECK(optimizer.step_count(kEmbedding) == 1);
  std::vector<double> stepped(before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    const double decayed = double(before[i]) * (1 - kAdamW.lr * kAdamW.weight_decay);
    stepped[i] = decayed - kAdamW.lr * double(g[i]) / (std::abs(double(g[i])) + kAdamW.eps);
  }
  const Tensor expected = Tensor::from_vector(stepped, embedding.shape()).to(DType::F32);
  CHECK(max_abs_diff(embedding.tensor(), expected) <= 1e-6);
  // lm_head runs on the stepped embedding: the next logits are those of the untied model given it.
  for (const auto& [name, value] : tied->named_parameters()) parameter(*untied, name) = value->tensor().clone();
  parameter(*untied, kHead) = embedding.tensor().clone();
  ag::NoGradGuard no_grad;
  CHECK(max_abs_diff(tied->training_logits(kIds).tensor(), untied->training_logits(kIds).tensor()) <= 1e-5);
}

TEST_CASE("AdamW over a tied model's named_parameters takes the unsharded model's steps", "[models][training][tied]") {
  TiedAndUntied dirs;
  const models::HFConfig config = models::load_hf_config(dirs.tied.str());
  auto reference = models::load_unsharded(dirs.tied.str(), DType::F32);
  const std::vector<double> expected_losses = train_three_steps(*reference);
  const std::map<std::string, Tensor> expected = copies(*reference);
  for (const auto& [plan_name, plan] : training_plans(config)) {
    INFO("plan " << plan_name << ", np " << world().size());
    auto model = models::load_sharded(dirs.tied.str(), world_line(), plan, DType::F32);
    const std::vector<double> losses = train_three_steps(*model);
    for (size_t step = 0; step < losses.size(); ++step) {
      INFO("step " << step);
      CHECK(std::abs(losses[step] - expected_losses[step]) <= 1e-5 * std::abs(expected_losses[step]));
    }
    const auto parameters = model->named_parameters();
    CHECK(parameters.size() == expected.size());
    for (const auto& [name, value] : parameters) {
      INFO("parameter " << name);
      REQUIRE(expected.count(name) == 1);
      const Tensor block = expected_block(*model, name, expected.at(name));
      REQUIRE(value->local().shape() == block.shape());
      // Where a gradient is small, AdamW's g / (|g| + eps) magnifies the sharded sums' rounding.
      CHECK(relative_error(value->local(), block) <= 5e-5);
    }
  }
}
