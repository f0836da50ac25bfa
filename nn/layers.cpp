#include "nn/layers.hpp"

#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "nn/linear_profile.hpp"

#include <chrono>

namespace dtensor::nn {

// The forwards call the autograd:: forms of the ops (autograd/ops.hpp for plain tensors,
// dtensor/autograd.hpp for DTensors): they record a graph when a parameter or the input requires
// a gradient, and cost one null test per operand otherwise (inference).
namespace ag = autograd;

namespace {

// An op's operands are all DTensors or all plain tensors (undefined ones, like a missing bias,
// are skipped); a mix means no strategy prepared the input. Returns whether they are DTensors.
bool distributed(const char* op, std::initializer_list<const Value*> operands) {
  bool any = false, all = true;
  std::string seen;
  for (const Value* v : operands) {
    if (v == nullptr || !v->defined()) continue;
    any = any || v->is_distributed();
    all = all && v->is_distributed();
    seen += (seen.empty() ? "" : "; ") + v->describe();
  }
  check<ValueError>(any == all, op,
                    "operands mix DTensors and plain tensors ({}); a parallel strategy's prepare_input "
                    "makes the input a DTensor",
                    seen);
  return any;
}

const Value& loaded(const Module& m, const char* name) {
  const Value& v = m.parameter(name);
  check<ValueError>(v.defined(), m.type_name().c_str(), "parameter '{}' is not loaded", name);
  return v;
}

// x @ weight^T (+ bias) on plain tensors or on DTensors, as the strategy (if any) left them.
Value linear_value(const Value& x, const Value& w, const Value* b) {
  if (distributed("Linear", {&x, &w, b})) {
    return b ? ag::linear(x.dtensor(), w.dtensor(), b->dtensor()) : ag::linear(x.dtensor(), w.dtensor());
  }
  return ag::linear(x.tensor(), w.tensor(), b ? b->tensor() : Tensor());
}

// linear_value timed and counted (2 * M * N * K of this rank's product) for the profiles alive.
Value profiled_linear(const Value& x, const Value& w, const Value* b) {
  const auto start = std::chrono::steady_clock::now();
  Value y = linear_value(x, w, b);
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  const Tensor& weight = w.local();  // [N, K] held by this rank
  const Tensor& input = x.local();
  const double rows = weight.size(1) == 0 ? 0.0 : double(input.numel()) / double(weight.size(1));
  ScopedLinearProfile::record(2.0 * rows * double(weight.size(0)) * double(weight.size(1)), seconds.count());
  return y;
}

// quantized_linear_value timed and counted as profiled_linear does.
Value profiled_quantized_linear(const Value& x, const QuantizedWeight& w, const Value* b, const std::string& name) {
  const auto start = std::chrono::steady_clock::now();
  Value y = quantized_linear_value(x, w, b, name.empty() ? "Linear" : name);
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  const double rows = double(x.local().numel()) / double(w.local.cols());
  ScopedLinearProfile::record(2.0 * rows * double(w.local.rows()) * double(w.local.cols()), seconds.count());
  return y;
}

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, DType dtype)
    : Module("Linear"), in_(in_features), out_(out_features) {
  declare_parameter("weight", {out_features, in_features}, dtype);
  if (bias) declare_parameter("bias", {out_features}, dtype);
}

void Linear::set_heads(HeadRole role, const AttentionHeads& heads) {
  check_heads(heads, "Linear::set_heads");
  const int64_t count = role == HeadRole::KeyValue ? heads.num_kv_heads : heads.num_heads;
  const bool columns = role == HeadRole::Output;
  const int64_t features = columns ? in_ : out_;
  check<ShapeError>(count * heads.head_dim == features, "Linear::set_heads",
                    "{} {} heads x head_dim {} = {}, but the Linear has {} {}", count,
                    role == HeadRole::KeyValue ? "KV" : "query", heads.head_dim, count * heads.head_dim, features,
                    columns ? "input features" : "output features");
  heads_ = HeadLayout{role, heads};
}

Value Linear::forward(const Value& x) {
  const Value* b = has_bias() ? &loaded(*this, "bias") : nullptr;
  if (weight_ && ScopedLinearProfile::active()) return profiled_quantized_linear(x, *weight_, b, name_);
  if (weight_) return quantized_linear_value(x, *weight_, b, name_.empty() ? type_name() : name_);
  const Value& w = loaded(*this, "weight");
  if (ScopedLinearProfile::active()) return profiled_linear(x, w, b);
  return linear_value(x, w, b);
}

ColumnSplit Linear::column_split() const {
  const Value& w = parameter("weight");
  if (w.is_distributed()) {
    const DTensor& d = w.dtensor();
    if (!d.placements().at(0).normalized(2).is_shard(1)) return {};
    return {chunk_bounds(in_, d.mesh().size()), &d.mesh()};
  }
  if (strategy() == nullptr || w.shape()[1] == in_) return {};
  const int64_t tp = strategy_mesh().size();
  if (!heads_ || heads_->role != HeadRole::Output) return {chunk_bounds(in_, tp), &strategy_mesh()};
  ColumnSplit split{{}, &strategy_mesh()};
  std::vector<int64_t>& bounds = split.bounds;
  for (int64_t rank = 0; rank < tp; ++rank) {
    const HeadRange q = rank_heads(heads_->heads, tp, rank).query;
    bounds.push_back(q.begin * heads_->heads.head_dim);
    bounds.push_back(q.end * heads_->heads.head_dim);
  }
  return split;
}

void Linear::parameter_loaded(const std::string& name, const std::string& param) {
  name_ = name;
  if (param != "weight" || !options_) return;
  weight_ = std::make_shared<QuantizedWeight>(quantize_loaded(parameter("weight"), *options_, column_split(), name));
}

void Linear::state_to(Device device) { move_quantized_weight(device); }

Embedding::Embedding(int64_t vocab, int64_t hidden, DType dtype) : Module("Embedding") {
  declare_parameter("weight", {vocab, hidden}, dtype);
}

void Embedding::parameter_loaded(const std::string& name, const std::string& param) {
  name_ = name;
  if (param != "weight" || !options_) return;
  Value& w = parameter("weight");
  const int64_t hidden = parameter_shape("weight")[1];
  ColumnSplit split;
  if (w.is_distributed() && w.dtensor().placements().at(0).normalized(2).is_shard(1))
    split = {chunk_bounds(hidden, w.dtensor().mesh().size()), &w.dtensor().mesh()};
  else if (!w.is_distributed() && strategy() != nullptr && w.shape()[1] != hidden)
    split = {chunk_bounds(hidden, strategy_mesh().size()), &strategy_mesh()};
  weight_ = std::make_shared<QuantizedWeight>(quantize_loaded(w, *options_, split, name));
}

void Embedding::state_to(Device device) { move_quantized_weight(device); }

Device Embedding::device() const { return weight_ ? weight_->local.device() : parameter("weight").local().device(); }

Value Embedding::forward(const Value& ids) {
  if (weight_) return quantized_embedding_value(ids, *weight_, name_.empty() ? type_name() : name_);
  const Value& w = loaded(*this, "weight");
  if (distributed("Embedding", {&ids, &w})) return ag::embedding(w.dtensor(), ids.dtensor());
  return ag::embedding(w.tensor(), ids.tensor());
}

RMSNorm::RMSNorm(int64_t hidden, double eps, DType dtype) : Module("RMSNorm"), eps_(eps) {
  declare_parameter("weight", {hidden}, dtype);
}

Value RMSNorm::forward(const Value& x) {
  const Value& w = loaded(*this, "weight");
  if (distributed("RMSNorm", {&x, &w})) return ag::rms_norm(x.dtensor(), w.dtensor(), eps_);
  return ag::rms_norm(x.tensor(), w.tensor(), eps_);
}

LayerNorm::LayerNorm(int64_t hidden, double eps, DType dtype) : Module("LayerNorm"), eps_(eps) {
  declare_parameter("weight", {hidden}, dtype);
  declare_parameter("bias", {hidden}, dtype);
}

Value LayerNorm::forward(const Value& x) {
  const Value& w = loaded(*this, "weight");
  const Value& b = loaded(*this, "bias");
  if (distributed("LayerNorm", {&x, &w, &b})) return ag::layer_norm(x.dtensor(), w.dtensor(), b.dtensor(), eps_);
  return ag::layer_norm(x.tensor(), w.tensor(), b.tensor(), eps_);
}

Value SiLU::forward(const Value& x) {
  return x.is_distributed() ? Value(ag::silu(x.dtensor())) : Value(ag::silu(x.tensor()));
}

Value GELU::forward(const Value& x) {
  return x.is_distributed() ? Value(ag::gelu(x.dtensor())) : Value(ag::gelu(x.tensor()));
}

}  // namespace dtensor::nn
