#include "nn/experts.hpp"

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "nn/strategy.hpp"
#include "tensor/ops.hpp"

#include <algorithm>

namespace dtensor::nn {

namespace ag = dtensor::autograd;

namespace {

// Row indices for index_select on `device` (the routing is planned on the host).
Tensor i64_tensor(const std::vector<int64_t>& values, Device device) {
  return Tensor::from_vector<int64_t>(values, {int64_t(values.size())}).to(device);
}

// The experts' work is batched: every expert's tokens go through one bmm over the experts, each
// expert's group padded to the largest group (padded rows repeat token 0; their outputs are never
// read back). On a GPU that is one batched kernel instead of one per expert; on the CPU bmm still
// runs one GEMM per expert, so there the gain is fewer op dispatches and the cost is the padding.
// The single bmm is therefore taken only when it wastes little:
//   - every expert in the routed range has tokens: an empty expert in the batch would be read
//     (all its weights) for nothing, which is most of the cost when few tokens are routed
//     (decoding);
//   - the padded rows are at most kMaxPaddingPercent of the routed rows: skewed routing would
//     multiply the work.
// Uniform routing of many tokens (prefill) meets both, since the largest group is near the mean.
// Otherwise each expert with tokens gets its own unpadded product (a batch of one): exactly the
// work routed, and only the weights of experts that have tokens are read.
constexpr int64_t kMaxPaddingPercent = 150;

// The experts [first, first + experts), each padded to `rows` rows, starting at row `row_start`
// of the padded layout.
struct ExpertBatch {
  int64_t first = 0, experts = 0, rows = 0, row_start = 0;
};

// The routed (token, slot) pairs, with each pair's row in the padded layout of the batches.
struct ExpertGrouping {
  std::vector<ExpertBatch> batches;
  std::vector<int64_t> row_of_pair;  // pair p = token * k + slot -> row in the padded layout
  int64_t rows = 0;                  // rows of the padded layout
};

std::vector<int64_t> pairs_per_expert(const std::vector<int64_t>& ids, int64_t num_experts, int64_t k) {
  std::vector<int64_t> count(size_t(num_experts), 0);
  for (size_t p = 0; p < ids.size(); ++p) {
    check<ValueError>(ids[p] >= 0 && ids[p] < num_experts, "Experts",
                      "expert_ids[{}, {}] = {} is out of range for {} experts", int64_t(p) / k, int64_t(p) % k, ids[p],
                      num_experts);
    ++count[size_t(ids[p])];
  }
  return count;
}

std::vector<ExpertBatch> plan_batches(const std::vector<int64_t>& count, int64_t pairs) {
  const auto active = [](int64_t n) { return n > 0; };
  const int64_t lo = int64_t(std::find_if(count.begin(), count.end(), active) - count.begin());
  const int64_t hi = int64_t(count.rend() - std::find_if(count.rbegin(), count.rend(), active)) - 1;
  const int64_t span = hi - lo + 1, largest = *std::max_element(count.begin(), count.end());
  const bool none_empty = std::all_of(count.begin() + lo, count.begin() + hi + 1, active);
  if (none_empty && span * largest * 100 <= kMaxPaddingPercent * pairs) return {{lo, span, largest, 0}};
  std::vector<ExpertBatch> batches;
  int64_t row = 0;
  for (int64_t e = lo; e <= hi; ++e) {
    if (count[size_t(e)] == 0) continue;
    batches.push_back({e, 1, count[size_t(e)], row});
    row += count[size_t(e)];
  }
  return batches;
}

// Pairs keep their (token, slot) order within an expert's group (a stable grouping).
ExpertGrouping group_by_expert(const std::vector<int64_t>& ids, int64_t num_experts, int64_t k) {
  const std::vector<int64_t> count = pairs_per_expert(ids, num_experts, k);
  ExpertGrouping g;
  g.batches = plan_batches(count, int64_t(ids.size()));
  std::vector<int64_t> next_row(size_t(num_experts), 0);
  for (const ExpertBatch& b : g.batches) {
    for (int64_t e = 0; e < b.experts; ++e) next_row[size_t(b.first + e)] = b.row_start + e * b.rows;
    g.rows = b.row_start + b.experts * b.rows;
  }
  g.row_of_pair.resize(ids.size());
  for (size_t p = 0; p < ids.size(); ++p) g.row_of_pair[p] = next_row[size_t(ids[p])]++;
  return g;
}

// down(silu(gate(x)) * up(x)) for a batch of experts: x [b, m, H], gate_up [b, 2I, H] ([gate; up]),
// down [b, H, I] -> [b, m, H]. The weights are read in place (transposed views GEMM reads as they are).
Tensor expert_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down) {
  const int64_t batch = x.size(0), rows = x.size(1), inter = gate_up.size(1) / 2;
  // [b * m, 2I]: [gate | up]; the activation on 2-D halves (the elementwise kernels run faster
  // on 2-D strided views than on 3-D ones).
  const Tensor gu = ag::view(ag::bmm(x, ag::transpose(gate_up, 1, 2)), {batch * rows, 2 * inter});
  const Tensor act = ag::mul(ag::silu(ag::narrow(gu, 1, 0, inter)), ag::narrow(gu, 1, inter, inter));
  return ag::bmm(ag::view(act, {batch, rows, inter}), ag::transpose(down, 1, 2));
}

// Each batch's input rows and expert weights. Several batches take them through one split node
// per tensor, whose backward joins the pieces' gradients once, rather than one narrow each (each
// of which would send back a zero-padded gradient of the whole tensor).
struct BatchPieces {
  std::vector<Tensor> rows, gate_up, down;
};

BatchPieces batch_pieces(const ExpertGrouping& g, const Tensor& x, const Tensor& gate_up, const Tensor& down) {
  const ExpertBatch& only = g.batches.front();
  if (g.batches.size() == 1) {
    return {{x}, {ag::narrow(gate_up, 0, only.first, only.experts)}, {ag::narrow(down, 0, only.first, only.experts)}};
  }
  std::vector<int64_t> row_sizes;  // batches of one expert each, in expert order
  for (const ExpertBatch& b : g.batches) row_sizes.push_back(b.rows);
  const std::vector<int64_t> one_each(size_t(gate_up.size(0)), 1);
  const std::vector<Tensor> gate_ups = ag::split(gate_up, one_each, 0), downs = ag::split(down, one_each, 0);
  BatchPieces pieces{ag::split(x, row_sizes, 0), {}, {}};
  for (const ExpertBatch& b : g.batches) {
    pieces.gate_up.push_back(gate_ups[size_t(b.first)]);
    pieces.down.push_back(downs[size_t(b.first)]);
  }
  return pieces;
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
  fail<ValueError>("Experts",
                   "experts need the routing: call route(hidden, expert_ids, routing_weights) or use SparseMoE");
}

Value Experts::route(const Value& hidden, const Tensor& expert_ids, const Tensor& routing_weights) {
  return call_with_strategy(hidden, [&](const Value& in) -> Value {
    return compute(in.tensor("Experts hidden states"), expert_ids, partial_sum_gradient(routing_weights));
  });
}

// With the intermediate dim split (moe_tp_experts), this rank's expert outputs are partial sums,
// so the routing weights' gradient (the output gradient dotted with each expert's output) is
// partial too: all-reduce it in the backward (Megatron's copy to the tensor-parallel region), so
// the replicated router receives the whole gradient on every rank.
Tensor Experts::partial_sum_gradient(const Tensor& routing_weights) const {
  const Value& gate_up = parameter("gate_up");
  if (!ag::should_record(routing_weights) || !gate_up.defined() || strategy() == nullptr ||
      gate_up.local().size(1) == parameter_shape("gate_up")[1])
    return routing_weights;
  const DeviceMesh mesh = strategy_mesh();
  return ag::record(
      "Experts routing weights", {routing_weights}, {}, ag::detach(routing_weights),
      [mesh](const ag::FunctionNode&, const Tensor& grad) { return ag::Grads{all_reduce_partial(grad, mesh)}; });
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
  if (ids.empty()) return Tensor::zeros({tokens, hidden_}, hidden.dtype(), hidden.device());
  const ExpertGrouping g = group_by_expert(ids, num_experts_, k);

  // The padded layout's input rows: each pair's token at its row, token 0 on padding rows.
  std::vector<int64_t> token_of_row(size_t(g.rows), 0);
  for (size_t p = 0; p < ids.size(); ++p) token_of_row[size_t(g.row_of_pair[p])] = int64_t(p) / k;
  const Tensor x = ag::index_select(hidden, 0, i64_tensor(token_of_row, hidden.device()));  // [rows, H]
  const BatchPieces pieces = batch_pieces(g, x, gate_up, down);
  std::vector<Tensor> outputs;
  for (size_t i = 0; i < g.batches.size(); ++i) {
    const ExpertBatch& b = g.batches[i];
    const Tensor xb = ag::view(pieces.rows[i], {b.experts, b.rows, hidden_});
    const Tensor yb = expert_mlp(xb, pieces.gate_up[i], pieces.down[i]);
    outputs.push_back(ag::reshape(yb, {b.experts * b.rows, hidden_}));
  }
  const Tensor y = outputs.size() == 1 ? outputs[0] : ag::cat(outputs, 0);
  // Back to (token, slot) order, weighted, then the k contributions of each token summed.
  const Tensor per_pair = ag::index_select(y, 0, i64_tensor(g.row_of_pair, hidden.device()));  // [T*k, H]
  // Weighted and summed in f32 (f64 for f64), rounded once: transformers multiplies the 16-bit expert
  // output by the f32 routing weight too, and rounding the weight first doubles the error.
  const DType accumulate = hidden.dtype() == DType::F64 ? DType::F64 : DType::F32;
  const Tensor w = ag::reshape(ag::cast(routing_weights, accumulate), {-1, 1});
  const Tensor weighted = ag::view(ag::mul(ag::cast(per_pair, accumulate), w), {tokens, k, hidden_});
  return ag::cast(ag::sum(weighted, {1}), hidden.dtype());
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
  const Tensor tokens = ag::reshape(input, {-1, experts_->hidden()});
  // The router is replicated: every rank computes the same routing from the same tokens.
  const Tensor logits = replicated_plain((*gate_)(tokens)).tensor("SparseMoE router logits");
  // Softmax in f32 as Mixtral does (f64 stays f64: never below the input's precision). The
  // gradient reaches the router through the top-k values and their renormalisation.
  const DType routing_dtype = logits.dtype() == DType::F64 ? DType::F64 : DType::F32;
  auto [weights, ids] = ag::topk(ag::softmax(ag::cast(logits, routing_dtype), -1), top_k_, -1);
  weights = ag::div(weights, ag::sum(weights, {-1}, /*keepdim=*/true));
  const Value out = experts_->route(tokens, ids, weights);
  return ag::reshape(out.tensor("SparseMoE output"), input.shape());
}

}  // namespace dtensor::nn
