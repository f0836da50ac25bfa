#include "nn/layers.hpp"

#include "dtensor/ops.hpp"
#include "nn/linear_profile.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <chrono>

namespace dtensor::nn {

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
    return b ? linear(x.dtensor(), w.dtensor(), b->dtensor()) : linear(x.dtensor(), w.dtensor());
  }
  return b ? linear(x.tensor(), w.tensor(), b->tensor()) : linear(x.tensor(), w.tensor());
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
  const Value& w = loaded(*this, "weight");
  const Value* b = has_bias() ? &loaded(*this, "bias") : nullptr;
  if (ScopedLinearProfile::active()) return profiled_linear(x, w, b);
  return linear_value(x, w, b);
}

Embedding::Embedding(int64_t vocab, int64_t hidden, DType dtype) : Module("Embedding") {
  declare_parameter("weight", {vocab, hidden}, dtype);
}

Value Embedding::forward(const Value& ids) {
  const Value& w = loaded(*this, "weight");
  if (distributed("Embedding", {&ids, &w})) return embedding(w.dtensor(), ids.dtensor());
  return embedding(w.tensor(), ids.tensor());
}

RMSNorm::RMSNorm(int64_t hidden, double eps, DType dtype) : Module("RMSNorm"), eps_(eps) {
  declare_parameter("weight", {hidden}, dtype);
}

Value RMSNorm::forward(const Value& x) {
  const Value& w = loaded(*this, "weight");
  if (distributed("RMSNorm", {&x, &w})) return rms_norm(x.dtensor(), w.dtensor(), eps_);
  return rms_norm(x.tensor(), w.tensor(), eps_);
}

LayerNorm::LayerNorm(int64_t hidden, double eps, DType dtype) : Module("LayerNorm"), eps_(eps) {
  declare_parameter("weight", {hidden}, dtype);
  declare_parameter("bias", {hidden}, dtype);
}

Value LayerNorm::forward(const Value& x) {
  const Value& w = loaded(*this, "weight");
  const Value& b = loaded(*this, "bias");
  if (distributed("LayerNorm", {&x, &w, &b})) return layer_norm(x.dtensor(), w.dtensor(), b.dtensor(), eps_);
  return layer_norm(x.tensor(), w.tensor(), b.tensor(), eps_);
}

Dropout::Dropout(double p, uint64_t seed) : Module("Dropout"), p_(p), seed_(seed) {
  check<ValueError>(p >= 0 && p < 1, "Dropout", "p must be in [0, 1), got {}", p);
}

Value Dropout::forward(const Value& x) {
  if (!training_ || p_ == 0) return x;
  // A fresh stream per call; the element's global index picks its number within the stream.
  RandomOptions stream{.seed = seed_ * 0x9E3779B97F4A7C15ull + calls_++};
  const Tensor& local = x.local();
  Shape offset(local.shape().size(), 0);
  if (x.is_distributed()) {
    const DTensor& d = x.dtensor();
    offset = local_block(d.shape(), d.mesh().shape(), d.mesh().coordinate(), d.placements()).offset;
  }
  // Drawn on the host, so a GPU tensor drops the same elements as its CPU copy would.
  Tensor draw = random_block(x.shape(), offset, local.shape(), DType::F64, stream);
  Tensor keep = ge(draw, Tensor::full({}, p_, DType::F64)).to(local.device());
  Tensor scaled = mul(local, Tensor::full({}, 1.0 / (1.0 - p_), local.dtype(), local.device()));
  Tensor out = where(keep, scaled, Tensor::zeros({}, local.dtype(), local.device()));
  if (!x.is_distributed()) return out;
  // Dropping is linear per element, so Partial values drop alike and stay partial.
  const DTensor& d = x.dtensor();
  return DTensor::from_local(out, d.mesh(), d.placements(), d.shape());
}

Value SiLU::forward(const Value& x) { return x.is_distributed() ? Value(silu(x.dtensor())) : Value(silu(x.tensor())); }

Value GELU::forward(const Value& x) { return x.is_distributed() ? Value(gelu(x.dtensor())) : Value(gelu(x.tensor())); }

}  // namespace dtensor::nn
