// The training step of examples/train and bench/bench_train: next-token cross-entropy on rows of
// a token file, AdamW, optional gradient clipping, f32 or bf16 mixed precision.
//
//   auto model = models::load_sharded(dir, mesh, plan, DType::F32);
//   training::Trainer trainer(model, {.lr = 1e-3, .clip_grad_norm = 1.0});
//   const Tensor tokens = io::read_token_ids("tokens.npy");           // [N, T+1]
//   for (int64_t s = 0; s < steps; ++s) training::StepResult r = trainer.step(s, tokens, batch);
//
// The semantics match PyTorch's (tools/compare_torch_training.py runs the same steps there): step s
// trains on rows (s*B .. s*B+B-1) mod N; the inputs are row[:-1], the labels row[1:], the loss the
// mean token cross-entropy; AdamW has betas (0.9, 0.95), eps 1e-8 and weight decay on every
// parameter, as torch.optim.AdamW(model.parameters()); clip_grad_norm_ runs over all parameters
// before each step. With bf16 the model computes in bf16 while f32 master weights and f32 AdamW
// states are trained: before each forward every bf16 parameter is recorded as a cast of its master,
// so the backward brings the gradients to the masters in f32.
#pragma once

#include "models/causal_lm.hpp"
#include "optim/adamw.hpp"
#include "optim/clip_grad.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dtensor::training {

struct TrainOptions {
  double lr = 1e-3;
  double weight_decay = 0.01;  // torch.optim.AdamW's default
  std::optional<double> clip_grad_norm;
  DType dtype = DType::F32;  // the model's compute dtype: f32 or bf16
  bool checkpoint_activations = false;
};

struct StepResult {
  int64_t step = 0;
  double loss = 0;
  // clip_grad_norm's returned norm (before clipping), or the same global 2-norm when not clipping.
  double grad_norm = 0;
  // This rank's wall seconds: forward through the loss, backward, clipping and the optimizer step.
  double forward_seconds = 0, backward_seconds = 0, optimizer_seconds = 0;
};

// Rows (step*batch .. step*batch+batch-1) mod N of tokens [N, T+1], as a new [batch, T+1] tensor.
Tensor batch_rows(const Tensor& tokens, int64_t step, int64_t batch);

// ValueError naming the row and column of the first id outside [0, vocab).
void check_token_ids(const Tensor& tokens, int64_t vocab, const std::string& file);

// The whole (global) tensor of the parameter `name` of `model`, whose value (or a master copy of it
// laid out the same way) is `value`, on every rank; collective over `tp_mesh`. A DTensor is
// gathered; a plain tensor of the declared shape is replicated and returned as it is; a plain tensor
// holding this rank's attention heads (head-granular q / k / v / o projections: uneven heads, or
// KV heads shared by several ranks) is assembled from every rank's heads, each head taken from the
// first rank that holds it.
Tensor whole_weight(nn::Module& model, const std::string& name, const nn::Value& value, const DeviceMesh& tp_mesh);

class Trainer {
 public:
  // `model` is loaded in options.dtype (f32 or bf16; DTypeError otherwise). With bf16, the f32
  // master weights are taken from `f32_weights` (the same checkpoint and plan loaded in f32) when
  // given, so they start from the checkpoint's values rather than their bf16 rounding.
  Trainer(std::shared_ptr<models::CausalLM> model, const TrainOptions& options,
          std::shared_ptr<models::CausalLM> f32_weights = nullptr);

  StepResult step(int64_t step, const Tensor& tokens, int64_t batch);

  // The f32 weights being trained, under the model's parameter names (the model's own parameters
  // in f32; their master copies in bf16). A tied lm_head's weight is the embedding's, listed once.
  const optim::NamedParameters& weights() const { return weights_; }
  models::CausalLM& model() { return *model_; }

 private:
  void make_optimizer();
  void cast_masters_into_model();

  std::shared_ptr<models::CausalLM> model_;
  TrainOptions options_;
  std::vector<std::unique_ptr<nn::Value>> masters_;  // bf16 only: f32 copies, the optimizer's
  optim::NamedParameters model_parameters_;          // the model's named_parameters()
  optim::NamedParameters weights_;
  std::unique_ptr<optim::AdamW> optimizer_;
};

}  // namespace dtensor::training
