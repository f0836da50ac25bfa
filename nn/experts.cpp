#include "nn/experts.hpp"

#include "nn/strategy.hpp"
#include "tensor/ops.hpp"

#include <numeric>

namespace dtensor::nn {

namespace {

Tensor i64_tensor(const std::vector<int64_t>& values) {
  return Tensor::from_vector<int64_t>(values, {int64_t(values.size())});
}

}  // namespace

Experts::Experts(int64_t num_experts, int64_t hidden, int64_t intermediate, DType dtype)
    : Module("Experts"), num_experts_(num_experts), hidden_(hidden) {
  check<ValueError>(num_experts > 0 && hidden > 0 && intermediate > 0, "Experts",
                    "experts, hidden and intermediate sizes must be positive, got {}, {}, {}", num_experts, hidden,
                    intermediate);
  declare_parameter("gate_up", {num_experts, 2 * intermediate, hidden}, dtype);
  declare_parameter("down", {num_experts, hidden, intermediate}, dtype);
}

Value Experts::forward(const Value&) {
  fail<ValueError>("Experts", "experts need the routing: call route(hidden, expert_ids, routing_weights) or use SparseMoE");
}

Value Experts::route(const Value& hidden, const Tensor& expert_ids, const Tensor& routing_weights) {
  const Strategy* s = strategy();
  const Value in = s ? s->prepare_input(hidden, *this, strategy_mesh()) : hidden;
  const Value out = compute(in.tensor("Experts hidden states"), expert_ids, routing_weights);
  return s ? s->prepare_output(out, *this, strategy_mesh()) : out;
}

Tensor Experts::compute(const Tensor& hidden, const Tensor& expert_ids, const Tensor& routing_weights) const {
  // This rank's weights: whole, or a slice of the intermediate dim (gate_r and up_r packed).
  const Value& gate_up_value = parameter("gate_up");
  const Value& down_value = parameter("down");
  check<ValueError>(gate_up_value.defined() && down_value.defined(), "Experts", "parameters are not loaded");
  const Tensor& gate_up = gate_up_value.tensor("Experts gate_up");
  const Tensor& down = down_value.tensor("Experts down");
  const int64_t inter = gate_up.size(1) / 2;  // local intermediate size (may be 0 on trailing ranks)
  check<ShapeError>(down.size(2) == inter, "Experts", "gate_up {} and down {} disagree on the intermediate size",
                    shape_str(gate_up.shape()), shape_str(down.shape()));

  check<ShapeError>(hidden.dim() == 2 && hidden.size(1) == hidden_, "Experts", "hidden states must be [T, {}], got {}",
                    hidden_, shape_str(hidden.shape()));
  const int64_t tokens = hidden.size(0);
  check<ShapeError>(expert_ids.dim() == 2 && expert_ids.size(0) == tokens, "Experts",
                    "expert_ids must be [{}, k], got {}", tokens, shape_str(expert_ids.shape()));
  check<ShapeError>(routing_weights.shape() == expert_ids.shape(), "Experts",
                    "routing_weights {} must have the shape of expert_ids {}", shape_str(routing_weights.shape()),
                    shape_str(expert_ids.shape()));
  check<DTypeError>(expert_ids.dtype() == DType::I64 || expert_ids.dtype() == DType::I32, "Experts",
                    "expert_ids must be i64 or i32, got {}", expert_ids.dtype());
  const int64_t k = expert_ids.size(1);
  const std::vector<int64_t> ids = expert_ids.to_vector<int64_t>();

  // Group the (token, slot) pairs by expert, stable, so each expert's tokens are one contiguous
  // run: order[j] is the pair at sorted position j, position[p] where pair p went.
  std::vector<int64_t> count(size_t(num_experts_), 0);
  for (size_t p = 0; p < ids.size(); ++p) {
    check<ValueError>(ids[p] >= 0 && ids[p] < num_experts_, "Experts",
                      "expert_ids[{}, {}] = {} is out of range for {} experts", int64_t(p) / k, int64_t(p) % k, ids[p],
                      num_experts_);
    ++count[size_t(ids[p])];
  }
  std::vector<int64_t> start(size_t(num_experts_) + 1, 0);
  std::partial_sum(count.begin(), count.end(), start.begin() + 1);
  std::vector<int64_t> order(ids.size()), position(ids.size()), token_of(ids.size());
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (size_t p = 0; p < ids.size(); ++p) {
    const int64_t j = next[size_t(ids[p])]++;
    order[size_t(j)] = int64_t(p);
    position[p] = j;
    token_of[size_t(j)] = int64_t(p) / k;
  }
  if (ids.empty()) return Tensor::zeros({tokens, hidden_}, hidden.dtype());

  const Tensor x = index_select(hidden, 0, i64_tensor(token_of));  // [T*k, H] grouped by expert
  const Tensor w = index_select(routing_weights.to(hidden.dtype()).reshape({-1}), 0, i64_tensor(order)).unsqueeze(1);
  // One matmul pair per expert that received tokens: the token counts differ per expert, so a
  // single bmm would need every group padded to the largest (up to E times the work when the
  // routing is skewed); these products on contiguous runs do exactly the work routed.
  std::vector<Tensor> outputs;
  for (int64_t e = 0; e < num_experts_; ++e) {
    const int64_t n = count[size_t(e)];
    if (n == 0) continue;
    const Tensor xe = x.narrow(0, start[size_t(e)], n);
    const Tensor gu = linear(xe, gate_up.select(0, e));  // [n, 2 * inter]: [gate | up]
    const Tensor act = mul(silu(gu.narrow(1, 0, inter)), gu.narrow(1, inter, inter));
    outputs.push_back(mul(linear(act, down.select(0, e)), w.narrow(0, start[size_t(e)], n)));
  }
  // Back to (token, slot) order, then the k contributions of each token summed.
  const Tensor grouped = outputs.size() == 1 ? outputs[0] : cat(outputs, 0);
  const Tensor per_slot = index_select(grouped, 0, i64_tensor(position));
  return sum(per_slot.view({tokens, k, hidden_}), {1});
}

SparseMoE::SparseMoE(int64_t num_experts, int64_t top_k, int64_t hidden, int64_t intermediate, DType dtype)
    : Module("SparseMoE"), top_k_(top_k) {
  check<ValueError>(top_k > 0 && top_k <= num_experts, "SparseMoE", "top_k must be in [1, {}], got {}", num_experts,
                    top_k);
  gate_ = add_module("gate", std::make_shared<Linear>(hidden, num_experts, /*bias=*/false, dtype));
  experts_ = add_module("experts", std::make_shared<Experts>(num_experts, hidden, intermediate, dtype));
}

Value SparseMoE::forward(const Value& x) {
  const Tensor& input = x.tensor("SparseMoE input");
  const Tensor tokens = input.reshape({-1, experts_->hidden()});
  // The router is replicated: every rank computes the same routing from the same tokens.
  const Tensor logits = (*gate_)(tokens).local();
  // Softmax in f32 as Mixtral does (f64 stays f64: never below the input's precision).
  const DType routing_dtype = logits.dtype() == DType::F64 ? DType::F64 : DType::F32;
  auto [weights, ids] = topk(softmax(logits.to(routing_dtype), -1), top_k_, -1);
  weights = div(weights, sum(weights, {-1}, /*keepdim=*/true));
  const Value out = experts_->route(tokens, ids, weights.to(input.dtype()));
  return out.tensor("SparseMoE output").reshape(input.shape());
}

}  // namespace dtensor::nn
