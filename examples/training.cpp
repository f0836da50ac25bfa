#include "training.hpp"

#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "nn/head_sharding.hpp"
#include "nn/layers.hpp"
#include "placements/sharding.hpp"
#include "tensor/ops.hpp"

#include <malloc.h>

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

// The model's loaded parameters: a tied lm_head's weight is the embedding's, and the model lists
// it undefined (as torch lists a tied parameter once).
optim::NamedParameters loaded_parameters(models::CausalLM& model) {
  optim::NamedParameters loaded;
  for (auto& [name, value] : model.named_parameters()) {
    if (value->defined()) loaded.emplace_back(name, value);
  }
  return loaded;
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

// Rows of a parameter's split dim: `count` from `local` in this rank's block go to `global`.
struct Piece {
  int64_t global = 0, local = 0, count = 0;
};

// The one dim along which `block` is a part of `shape`.
int64_t split_dim(const Shape& block, const Shape& shape, const std::string& name) {
  int64_t dim = -1;
  for (size_t d = 0; d < shape.size() && block.size() == shape.size(); ++d) {
    if (block[d] == shape[d]) continue;
    check(dim < 0, kOp, "parameter '{}': block {} of {} is split on more than one dim", name, shape_str(block),
          shape_str(shape));
    dim = int64_t(d);
  }
  check(dim >= 0, kOp, "parameter '{}': block {} is not a part of {}", name, shape_str(block), shape_str(shape));
  return dim;
}

// A projection's heads on this rank that no lower rank holds (ranks hold increasing head ranges;
// a KV head shared by several ranks is taken from the first).
Piece head_piece(const nn::Linear::HeadLayout& layout, const DeviceMesh& tp_mesh) {
  const int64_t tp = tp_mesh.size(), rank = tp_mesh.coordinate()[0];
  const nn::HeadRange mine = nn::rank_heads(layout.heads, tp, rank).of(layout.role);
  const int64_t first =
      rank == 0 ? mine.begin : std::max(mine.begin, nn::rank_heads(layout.heads, tp, rank - 1).of(layout.role).end);
  const int64_t head_dim = layout.heads.head_dim;
  return {first * head_dim, (first - mine.begin) * head_dim, std::max<int64_t>(mine.end - first, 0) * head_dim};
}

// A packed parameter holds this rank's torch.chunk slice of each of its `parts`, one after the
// other (the packed strategies of nn/strategies_packed.cpp: a Linear's [gate; up] and an
// Experts' gate_up in 2 parts, an Experts' down in 1).
std::vector<Piece> packed_pieces(int64_t full, int64_t parts, const DeviceMesh& tp_mesh) {
  const int64_t rank = tp_mesh.coordinate()[0];
  const ChunkSpan span = chunk_span(full / parts, tp_mesh.size(), rank);
  std::vector<Piece> pieces;
  for (int64_t p = 0; p < parts; ++p) pieces.push_back({p * (full / parts) + span.offset, p * span.size, span.size});
  return pieces;
}

double sum_of_squares(const Tensor& t) {
  const Tensor x = t.to(DType::F64);
  return sum(mul(x, x)).item<double>();
}

// The rows of a plain parameter's split dim that this rank is the first to hold: its heads that no
// lower rank holds, its chunks of a packed parameter, or (replicated) everything on rank 0 only.
// The same decision on every rank: a rank may hold every KV head when others do not.
struct Ownership {
  bool replicated = false;
  int64_t dim = 0;
  std::vector<Piece> pieces;
};

Ownership owned_rows(nn::Module& model, const std::string& name, const Tensor& local, const DeviceMesh& tp_mesh) {
  const size_t dot = name.rfind('.');
  nn::Module* owner = dot == std::string::npos ? &model : model.find(name.substr(0, dot));
  check(owner != nullptr, kOp, "no module holds parameter '{}'", name);
  const std::string param = name.substr(dot + 1);
  const Shape& shape = owner->parameter_shape(param);
  const auto* linear = dynamic_cast<const nn::Linear*>(owner);
  const bool heads = linear != nullptr && linear->heads() && param == "weight" && tp_mesh.size() > 1;
  Ownership own;
  if (!heads && local.shape() == shape) {
    own.replicated = true;
    if (tp_mesh.coordinate()[0] == 0 && !shape.empty()) own.pieces.push_back({0, 0, shape[0]});
    return own;
  }
  if (heads) {
    own.dim = linear->heads()->role == nn::HeadRole::Output ? 1 : 0;
    own.pieces.push_back(head_piece(*linear->heads(), tp_mesh));
  } else {
    own.dim = split_dim(local.shape(), shape, name);
    own.pieces = packed_pieces(shape[size_t(own.dim)], param == "down" ? 1 : 2, tp_mesh);
  }
  return own;
}

}  // namespace

void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest threshold
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
}

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
  const Ownership own = owned_rows(model, name, local, tp_mesh);
  if (own.replicated) return local.clone();
  const size_t dot = name.rfind('.');
  Tensor whole = Tensor::zeros(model.find(name.substr(0, dot))->parameter_shape(name.substr(dot + 1)), local.dtype());
  for (const Piece& p : own.pieces)
    whole.narrow(own.dim, p.global, p.count).copy_from(local.narrow(own.dim, p.local, p.count));
  tp_mesh.comm(0).all_reduce(whole);
  return whole;
}

double clip_grad_norm(nn::Module& model, const optim::NamedParameters& weights, double max_norm) {
  autograd::NoGradGuard no_grad;
  const DeviceMesh* mesh = optim::detail::common_mesh(weights, kOp);
  double local_sum = 0;
  std::vector<Tensor> grads;
  for (const auto& [name, value] : weights) {
    const Tensor grad = optim::detail::local_grad(*value);
    if (!grad.defined()) continue;
    grads.push_back(grad);
    if (mesh == nullptr) {
      local_sum += sum_of_squares(grad);
    } else if (value->is_distributed()) {
      const Placements& placements = value->dtensor().placements();
      const bool counted = std::all_of(placements.begin(), placements.end(),
                                       [&](const Placement& p) { return p.is_shard() || mesh->coordinate()[0] == 0; });
      if (counted) local_sum += sum_of_squares(grad);
    } else {
      const Ownership own = owned_rows(model, name, grad, *mesh);
      for (const Piece& p : own.pieces) local_sum += sum_of_squares(grad.narrow(own.dim, p.local, p.count));
    }
  }
  Tensor total = Tensor::full({1}, local_sum, DType::F64);
  if (mesh != nullptr && mesh->size() > 1) mesh->comm(0).all_reduce(total);
  const double norm = std::sqrt(total.item<double>());
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1) {
    for (const Tensor& grad : grads) grad.copy_from(mul(grad, coef));
  }
  return norm;
}

Trainer::Trainer(std::shared_ptr<models::CausalLM> model, const TrainOptions& options,
                 std::shared_ptr<models::CausalLM> f32_weights)
    : model_(std::move(model)), options_(options) {
  check<DTypeError>(options.dtype == DType::F32 || options.dtype == DType::BF16, kOp,
                    "--dtype must be f32 or bf16, got {}", dtype_name(options.dtype));
  check<DTypeError>(model_->dtype() == options.dtype, kOp, "the model is {}, the options say {}",
                    dtype_name(model_->dtype()), dtype_name(options.dtype));
  model_->set_activation_checkpointing(options.checkpoint_activations);
  model_parameters_ = loaded_parameters(*model_);
  if (options.dtype == DType::F32) {
    model_->requires_grad_(true);
    weights_ = model_parameters_;
    make_optimizer();
    return;
  }
  const optim::NamedParameters f32 = f32_weights ? loaded_parameters(*f32_weights) : optim::NamedParameters{};
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
      clip_grad_norm(*model_, weights_, options_.clip_grad_norm.value_or(std::numeric_limits<double>::max()));
  optimizer_->step();
  result.optimizer_seconds = seconds_since(optimizer_start);
  return result;
}

}  // namespace dtensor::training
