// Step 7 of docs/tutorial.md: training the tensor-parallel Llama of step 6: autograd through the
// DTensor ops, a vocab-parallel cross-entropy and AdamW, checked step by step against the same
// training in one process. Runs on any number of ranks.
//
//   scripts/mpirun.sh -np 4 build/examples/tutorial/07_training [CHECKPOINT_DIR]
#include "tutorial.hpp"

#include "autograd/ops.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/autograd.hpp"
#include "models/causal_lm.hpp"
#include "nn/tp_plan.hpp"
#include "optim/optim.hpp"
#include "tensor/random.hpp"
#include "tools/random_checkpoint.hpp"

#include <cmath>

using namespace dtensor;
namespace ag = dtensor::autograd;

namespace {

// Step 6's plan, but lm_head plain colwise: the logits stay split over the vocabulary, and the
// loss is computed without ever gathering them.
constexpr const char* kPlan = R"({
  "model.embed_tokens": "rowwise",
  "model.layers.*.self_attn.q_proj": "colwise", "model.layers.*.self_attn.k_proj": "colwise",
  "model.layers.*.self_attn.v_proj": "colwise", "model.layers.*.self_attn.o_proj": "rowwise",
  "model.layers.*.mlp.gate_proj": "colwise", "model.layers.*.mlp.up_proj": "colwise",
  "model.layers.*.mlp.down_proj": "rowwise",
  "lm_head": "colwise"
})";
constexpr int kSteps = 5;

// Mean next-token cross-entropy of one batch, then its backward. The sharded model's logits are
// a DTensor split on the vocab (vocab-parallel loss: three all_reduces of one number per token);
// the unsharded model's a plain tensor.
double loss_and_backward(models::CausalLM& model, const Tensor& inputs, const Tensor& labels) {
  nn::Value logits = model.training_logits(inputs);
  if (logits.is_distributed()) {
    DTensor loss = ag::cross_entropy(logits.dtensor(), labels);
    ag::backward(loss);
    return loss.to_local().item<double>();
  }
  Tensor loss = ag::cross_entropy(logits.tensor(), labels);
  ag::backward(loss);
  return loss.item<double>();
}

// kSteps of AdamW on the same batch (tokens [B, T + 1]: inputs row[:-1], labels row[1:]).
std::vector<double> train(models::CausalLM& model, const Tensor& tokens) {
  const int64_t batch = tokens.size(0), length = tokens.size(1) - 1;
  const Tensor inputs = tokens.narrow(1, 0, length).contiguous();
  const Tensor labels = tokens.narrow(1, 1, length).contiguous().reshape({batch * length});
  model.requires_grad_();  // every parameter a leaf: backward fills its gradient
  optim::AdamW optimizer(model.named_parameters(), {.lr = 1e-2, .weight_decay = 0.0});
  std::vector<double> losses;
  for (int step = 0; step < kSteps; ++step) {
    optimizer.zero_grad();
    losses.push_back(loss_and_backward(model, inputs, labels));
    optimizer.step();  // elementwise on each rank's own blocks: no communication
  }
  return losses;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    const bool root = world.rank() == 0;
    const std::string dir = argc > 1 ? argv[1] : "tutorial-llama";
    if (root)
      tools::write_random_checkpoint(
          dir, {.hidden = 48, .intermediate = 88, .layers = 2, .heads = 6, .kv_heads = 2, .vocab = 250, .seed = 7});
    world.barrier();
    // 4 sequences of 16 tokens (+ 1 for the last label), the same on every rank.
    const Tensor tokens = random({4, 17}, DType::I64, {.seed = 11, .a = 0, .b = 250});

    DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
    auto model = models::load_sharded(dir, mesh, nn::TpPlan::from_json(kPlan), DType::F32);
    // One forward before training, to look at the logits: split over the vocab, never gathered.
    const nn::Value logits = model->training_logits(tokens.narrow(1, 0, 16).contiguous());
    if (root) fmt::print("logits: {}\n", logits.describe());
    const std::vector<double> losses = train(*model, tokens);
    // A parameter's gradient has the parameter's placements.
    nn::Value& down = model->find("model.layers.0.mlp.down_proj")->parameter("weight");
    const DTensor down_grad = ag::grad(down.dtensor());
    if (root)
      fmt::print("down_proj weight {}, its gradient {}\n", placements_str(down.dtensor().placements()),
                 placements_str(down_grad.placements()));

    bool same = true;
    if (root) {  // the reference: the same training, unsharded, in this one process
      auto whole = models::load_unsharded(dir, DType::F32);
      const std::vector<double> single = train(*whole, tokens);
      for (int step = 0; step < kSteps; ++step) {
        const double rel = std::abs(losses[size_t(step)] - single[size_t(step)]) / single[size_t(step)];
        same = same && rel < 1e-5;
        fmt::print("step {}: loss {:.4g}\n", step, losses[size_t(step)]);
      }
      fmt::print("every loss equals the single-process one within 1e-5 (relative): {}\n", same ? "yes" : "NO");
    }
    Tensor verdict = Tensor::full({1}, same ? 0.0 : 1.0, DType::F32);
    world.broadcast(verdict, 0);  // every rank exits with rank 0's verdict
    return verdict.item<float>() == 0 ? 0 : 1;
  });
}
