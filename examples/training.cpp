#include "training.hpp"

#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "nn/strategy.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace dtensor::training {

namespace {

constexpr const char* kOp = "train";

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

nn::Value f32_copy(const nn::Value& value) {
  if (!value.is_distributed()) return nn::Value(value.tensor().to(DType::F32));
  const DTensor& d = value.dtensor();
  return nn::Value(DTensor::from_local(d.to_local().to(DType::F32), d.mesh(), d.placements(), d.shape()));
}

void mark_requires_grad(nn::Value& value) {
  if (value.is_distributed()) {
    DTensor d = value.dtensor();
    autograd::set_requires_grad(d);
    value = nn::Value(d);
  } else {
    Tensor t = value.tensor();
    autograd::set_requires_grad(t);
    value = nn::Value(t);
  }
}

nn::Value recorded_cast(const nn::Value& master, DType dtype) {
  if (master.is_distributed()) return nn::Value(autograd::cast(master.dtensor(), dtype));
  return nn::Value(autograd::cast(master.tensor(), dtype));
}

// The mean token cross-entropy of logits [B*T, V] (plain, or a DTensor split on the vocab) against
// labels [B*T], then its backward; returns the loss and times both phases into `result` (the
// forward from `start`, which the caller took before the model ran).
double loss_and_backward(const nn::Value& logits, const Tensor& labels, std::chrono::steady_clock::time_point start,
                         StepResult& result) {
  if (logits.is_distributed()) {
    const DTensor loss = autograd::cross_entropy(logits.dtensor(), labels);
    result.forward_seconds = seconds_since(start);
    const auto backward_start = std::chrono::steady_clock::now();
    autograd::backward(loss);
    result.backward_seconds = seconds_since(backward_start);
    return loss.to_local().to(DType::F64).item<double>();
  }
  const Tensor loss = autograd::cross_entropy(logits.tensor(), labels);
  result.forward_seconds = seconds_since(start);
  const auto backward_start = std::chrono::steady_clock::now();
  autograd::backward(loss);
  result.backward_seconds = seconds_since(backward_start);
  return loss.to(DType::F64).item<double>();
}

}  // namespace

Tensor batch_rows(const Tensor& tokens, int64_t step, int64_t batch) {
  const int64_t rows = tokens.size(0);
  std::vector<Tensor> picked;
  for (int64_t b = 0; b < batch; ++b) picked.push_back(tokens.narrow(0, (step * batch + b) % rows, 1));
  return cat(picked, 0).contiguous();
}

void check_token_ids(const Tensor& tokens, int64_t vocab, const std::string& file) {
  const Tensor ids = tokens.to(DType::I64).contiguous();
  const auto* data = static_cast<const int64_t*>(ids.data_ptr());
  const int64_t columns = ids.size(1);
  for (int64_t i = 0; i < ids.numel(); ++i) {
    check(data[i] >= 0 && data[i] < vocab, kOp,
          "--tokens {}: id {} at row {} column {} is outside the vocabulary [0, {})", file, data[i], i / columns,
          i % columns, vocab);
  }
}

Tensor whole_weight(nn::Module& model, const std::string& name, const nn::Value& value, const DeviceMesh& tp_mesh) {
  autograd::NoGradGuard no_grad;
  if (value.is_distributed()) return value.dtensor().full_tensor();
  const Tensor& local = value.tensor();
  const nn::PlainShare own = nn::plain_share_of(model, name);
  if (own.whole) return local.clone();
  const size_t dot = name.rfind('.');
  Tensor whole = Tensor::zeros(model.find(name.substr(0, dot))->parameter_shape(name.substr(dot + 1)), local.dtype());
  for (const nn::PlainRun& r : own.runs)
    whole.narrow(own.dim, r.global, r.count).copy_from(local.narrow(own.dim, r.local, r.count));
  tp_mesh.comm(0).all_reduce(whole);
  return whole;
}

Trainer::Trainer(std::shared_ptr<models::CausalLM> model, const TrainOptions& options,
                 std::shared_ptr<models::CausalLM> f32_weights)
    : model_(std::move(model)), options_(options) {
  check<DTypeError>(options.dtype == DType::F32 || options.dtype == DType::BF16, kOp,
                    "--dtype must be f32 or bf16, got {}", dtype_name(options.dtype));
  check<DTypeError>(model_->dtype() == options.dtype, kOp, "the model is {}, the options say {}",
                    dtype_name(model_->dtype()), dtype_name(options.dtype));
  model_->set_activation_checkpointing(options.checkpoint_activations);
  model_parameters_ = model_->named_parameters();
  if (options.dtype == DType::F32) {
    model_->requires_grad_(true);
    weights_ = model_parameters_;
    make_optimizer();
    return;
  }
  const optim::NamedParameters f32 = f32_weights ? f32_weights->named_parameters() : optim::NamedParameters{};
  check(f32.empty() || f32.size() == model_parameters_.size(), kOp, "the f32 weights have {} parameters, the model {}",
        f32.size(), model_parameters_.size());
  for (size_t i = 0; i < model_parameters_.size(); ++i) {
    const auto& [name, value] = model_parameters_[i];
    check(f32.empty() || f32[i].first == name, kOp, "the f32 weights' parameter {} is '{}', the model's '{}'", i,
          f32.empty() ? "" : f32[i].first, name);
    masters_.push_back(std::make_unique<nn::Value>(f32.empty() ? f32_copy(*value) : *f32[i].second));
    mark_requires_grad(*masters_.back());
    weights_.emplace_back(name, masters_.back().get());
  }
  make_optimizer();
}

void Trainer::make_optimizer() {
  optimizer_ = std::make_unique<optim::AdamW>(
      weights_,
      optim::AdamWOptions{.lr = options_.lr, .beta2 = 0.95, .eps = 1e-8, .weight_decay = options_.weight_decay});
}

void Trainer::cast_masters_into_model() {
  for (size_t i = 0; i < masters_.size(); ++i)
    *model_parameters_[i].second = recorded_cast(*masters_[i], options_.dtype);
}

StepResult Trainer::step(int64_t step, const Tensor& tokens, int64_t batch) {
  StepResult result;
  result.step = step;
  const Tensor rows = batch_rows(tokens, step, batch).to(model_->device());
  const int64_t length = rows.size(1) - 1;
  const Tensor inputs = rows.narrow(1, 0, length).contiguous();
  const Tensor labels = rows.narrow(1, 1, length).contiguous().reshape({batch * length});

  optimizer_->zero_grad();
  const auto start = std::chrono::steady_clock::now();
  if (!masters_.empty()) cast_masters_into_model();
  const nn::Value logits = model_->training_logits(inputs);
  result.loss = loss_and_backward(logits, labels, start, result);

  const auto optimizer_start = std::chrono::steady_clock::now();
  // Without clipping, the largest bound: clip_grad_norm computes the norm and scales nothing.
  result.grad_norm =
      optim::clip_grad_norm(*model_, weights_, options_.clip_grad_norm.value_or(std::numeric_limits<double>::max()));
  optimizer_->step();
  result.optimizer_seconds = seconds_since(optimizer_start);
  return result;
}

}  // namespace dtensor::training
