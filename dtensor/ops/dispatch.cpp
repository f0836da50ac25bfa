// Rule choice and its cache for DTensor ops (see dispatch.hpp).
#include "dtensor/ops/dispatch.hpp"

#include "dtensor/ops.hpp"
#include "tensor/fnv_hash.hpp"

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace dtensor::detail {

// The one place allowed to build a DTensor from parts without checks: an op's output is
// correct by construction of its rule.
struct OpAccess {
  static DTensor make(Tensor local, const DeviceMesh& mesh, Placements placements, Shape shape) {
    return DTensor(std::move(local), mesh, std::move(placements), std::move(shape));
  }
  // An op's input moved to the layout its rule reads, unrecorded: the op records its own node.
  static DTensor redistribute(const DTensor& input, const Placements& target) {
    return input.redistribute_untracked(target);
  }
};

namespace {

// The cache key is a flat list of integers; lookups hash a span without building a vector.
struct KeyHash {
  using is_transparent = void;
  size_t operator()(std::span<const int64_t> key) const {
    Fnv1a h;
    for (int64_t v : key) h.add(v);
    return size_t(h.value());
  }
  size_t operator()(const std::vector<int64_t>& key) const { return (*this)(std::span<const int64_t>(key)); }
};

struct KeyEqual {
  using is_transparent = void;
  static bool same(std::span<const int64_t> a, std::span<const int64_t> b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
  }
  bool operator()(const std::vector<int64_t>& a, const std::vector<int64_t>& b) const { return a == b; }
  bool operator()(std::span<const int64_t> a, const std::vector<int64_t>& b) const { return same(a, b); }
  bool operator()(const std::vector<int64_t>& a, std::span<const int64_t> b) const { return same(a, b); }
};

class DecisionCache {
 public:
  const OpDecision* find(std::span<const int64_t> key) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second;
  }
  // Node-based map: the reference stays valid while other entries are added.
  const OpDecision& insert(std::span<const int64_t> key, OpDecision decision) {
    std::lock_guard lock(mutex_);
    return map_.try_emplace(std::vector<int64_t>(key.begin(), key.end()), std::move(decision)).first->second;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::vector<int64_t>, OpDecision, KeyHash, KeyEqual> map_;
};

DecisionCache& cache() {
  static DecisionCache instance;
  return instance;
}

int64_t encode(const Placement& p) {
  return (int64_t(p.kind()) << 40) | (int64_t(p.reduce_op()) << 32) | (p.dim() & 0xffffffff);
}

void append_shape(std::vector<int64_t>& key, const Shape& shape) {
  key.push_back(int64_t(shape.size()));
  key.insert(key.end(), shape.begin(), shape.end());
}

void build_key(std::vector<int64_t>& key, const char* op, std::span<const int64_t> params,
               std::span<const DTensor* const> inputs) {
  key.clear();
  key.push_back(int64_t(reinterpret_cast<intptr_t>(op)));
  key.push_back(int64_t(params.size()));
  key.insert(key.end(), params.begin(), params.end());
  append_shape(key, inputs[0]->mesh().shape());
  for (const DTensor* t : inputs) {
    key.push_back(int64_t(t->dtype()));
    append_shape(key, t->shape());
    for (const Placement& p : t->placements()) key.push_back(encode(p));
  }
}

void check_same_mesh(const char* op, std::span<const DTensor* const> inputs) {
  for (size_t i = 1; i < inputs.size(); ++i) {
    check<MeshError>(inputs[i]->mesh() == inputs[0]->mesh(), op,
                     "input {} lives on {} but input 0 on {}; an op's inputs must share one mesh", i,
                     inputs[i]->mesh().to_string(), inputs[0]->mesh().to_string());
  }
}

std::string placements_of(std::span<const DTensor* const> inputs) {
  std::string out;
  for (const DTensor* t : inputs) out += (out.empty() ? "" : ", ") + placements_str(t->placements());
  return out;
}

// The price of moving every input to the rule's placements; +inf when a move is impossible.
double redistribute_cost(std::span<const DTensor* const> inputs, const OpDecision& rule) {
  double cost = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DTensor& t = *inputs[i];
    if (rule.inputs[i] == t.placements()) continue;
    cost += cached_plan(t.shape(), t.local_tensor().element_size(), t.mesh().shape(), t.placements(), rule.inputs[i])
                .estimated_us;
  }
  return cost;
}

// The whole-mesh rule that picks candidates[choice[m]] on every mesh dim m.
OpDecision combine(const std::vector<DimRule>& candidates, const std::vector<size_t>& choice, size_t n_inputs,
                   const Shape& output_shape) {
  OpDecision rule;
  rule.inputs.assign(n_inputs, Placements(choice.size(), Replicate()));
  rule.output.resize(choice.size(), Replicate());
  for (size_t m = 0; m < choice.size(); ++m) {
    const DimRule& r = candidates[choice[m]];
    for (size_t i = 0; i < n_inputs; ++i) rule.inputs[i][m] = r.inputs[i];
    rule.output[m] = r.output;
  }
  rule.output_shape = output_shape;
  return rule;
}

// Steps `choice` through every combination (an odometer); false after the last.
bool next_choice(std::vector<size_t>& choice, size_t options) {
  for (size_t m = choice.size(); m-- > 0;) {
    if (++choice[m] < options) return true;
    choice[m] = 0;
  }
  return false;
}

OpDecision choose(const char* op, std::span<const DTensor* const> inputs, const OpRules& rules) {
  std::vector<ArgInfo> args;
  for (const DTensor* t : inputs) args.push_back({t->shape(), t->placements(), t->dtype()});
  Shape output_shape = rules.output_shape(args);
  // All-Replicate first: ties go to the rule listed first (see dispatch.hpp).
  std::vector<DimRule> candidates = {all_replicate(inputs.size())};
  for (DimRule& rule : rules.dim_rules(args, output_shape)) candidates.push_back(std::move(rule));
  const Shape& mesh_shape = inputs[0]->mesh().shape();

  std::optional<OpDecision> best;
  double best_cost = 0;
  std::vector<size_t> choice(mesh_shape.size(), 0);
  do {
    OpDecision rule = combine(candidates, choice, inputs.size(), output_shape);
    if (!rules.accept(args, rule, mesh_shape)) continue;
    double cost = redistribute_cost(inputs, rule);
    if (!best || cost < best_cost) {
      best = std::move(rule);
      best_cost = cost;
    }
  } while (next_choice(choice, candidates.size()));
  check<ValueError>(best.has_value(), op, "no sharding rule applies to inputs with placements {} on mesh {}",
                    placements_of(inputs), shape_str(mesh_shape));
  return std::move(*best);
}

}  // namespace

const OpDecision& decide(const char* op, OpParams params, std::span<const DTensor* const> inputs,
                         const OpRules& rules) {
  return decide(op, std::span<const int64_t>(params.begin(), params.size()), inputs, rules);
}

const OpDecision& decide(const char* op, std::span<const int64_t> params, std::span<const DTensor* const> inputs,
                         const OpRules& rules) {
  check_same_mesh(op, inputs);
  thread_local std::vector<int64_t> key;
  build_key(key, op, params, inputs);
  if (const OpDecision* hit = cache().find(key)) return *hit;
  return cache().insert(key, choose(op, inputs, rules));
}

std::vector<Tensor> prepared_locals(const char* op, std::span<const DTensor* const> inputs,
                                    const OpDecision& decision) {
  if (NoImplicitRedistribute::active()) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      check<ValueError>(inputs[i]->placements() == decision.inputs[i], op,
                        "inputs with placements {} match no sharding rule without a redistribute (the "
                        "cheapest rule needs input {} as {}), and NoImplicitRedistribute is active",
                        placements_of(inputs), i, placements_str(decision.inputs[i]));
    }
  }
  std::vector<Tensor> locals;
  locals.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DTensor& t = *inputs[i];
    const bool ready = t.placements() == decision.inputs[i];
    locals.push_back(ready ? t.local_tensor() : OpAccess::redistribute(t, decision.inputs[i]).local_tensor());
  }
  return locals;
}

DTensor wrap_output(Tensor local, const DTensor& like, const OpDecision& decision) {
  return OpAccess::make(std::move(local), like.mesh(), decision.output, decision.output_shape);
}

DTensor wrap_output(Tensor local, const DTensor& like, const Placements& placements, const Shape& shape) {
  return OpAccess::make(std::move(local), like.mesh(), placements, shape);
}

DimRule all_replicate(size_t inputs) { return {std::vector<Placement>(inputs, Replicate()), Replicate()}; }

bool is_linear_partial(const Placement& p) {
  return p.is_partial() && (p.reduce_op() == ReduceOp::Sum || p.reduce_op() == ReduceOp::Avg);
}

}  // namespace dtensor::detail

namespace dtensor {

namespace {
thread_local int no_implicit_redistribute_depth = 0;
}

NoImplicitRedistribute::NoImplicitRedistribute() { ++no_implicit_redistribute_depth; }
NoImplicitRedistribute::~NoImplicitRedistribute() { --no_implicit_redistribute_depth; }
bool NoImplicitRedistribute::active() { return no_implicit_redistribute_depth > 0; }

}  // namespace dtensor
