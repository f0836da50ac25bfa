// How a DTensor op runs (internal header for the files of dtensor/ops/).
//
// An op describes its sharding rules for ONE mesh dim: each rule says which placement every
// input must have on that mesh dim and which placement the output then has (e.g. matmul's
// (S(1), S(0)) -> P(sum)). A rule for the whole mesh picks one such per-dim rule for every mesh
// dim. `decide` enumerates those combinations, prices each by the redistributes its inputs would
// need (the redistribute planner's cost model), and keeps the cheapest; ties go to the rule that
// moves nothing, then to the rule listed first. The decision is cached by (op, op parameters,
// every input's shape, dtype and placements, mesh shape), so a repeated call costs one hash
// lookup. `run_op` then redistributes the inputs that differ, runs the local op on the local
// blocks and wraps the result with the rule's output placements.
#pragma once

#include "dtensor/dtensor.hpp"

#include <initializer_list>
#include <span>
#include <vector>

namespace dtensor::detail {

// An input as the rule functions see it.
struct ArgInfo {
  const Shape& shape;
  const Placements& placements;
  DType dtype;
};

// A rule restricted to one mesh dim.
struct DimRule {
  std::vector<Placement> inputs;  // one per input, normalized against that input's rank
  Placement output;               // normalized against the output's rank
};

// A rule over the whole mesh: placements per input, the output's, and the output's global shape.
struct OpDecision {
  std::vector<Placements> inputs;
  Placements output;
  Shape output_shape;
};

class OpRules {
 public:
  virtual ~OpRules() = default;
  // Validates the inputs (typed errors naming the op) and returns the output's global shape.
  virtual Shape output_shape(std::span<const ArgInfo> args) const = 0;
  // The sharding and partial rules for one mesh dim; every mesh dim uses the same list. The
  // dispatcher adds the all-Replicate rule in front of it for every op (running the local op on
  // whole inputs gives the whole output), so an op never lists it and always has a way to run.
  virtual std::vector<DimRule> dim_rules(std::span<const ArgInfo> args, const Shape& output_shape) const = 0;
  // Rejects a whole-mesh combination the per-dim rules cannot see (e.g. a reshape that needs
  // even shards). Runs after the dims were combined.
  virtual bool accept(std::span<const ArgInfo> /*args*/, const OpDecision& /*rule*/,
                      const Shape& /*mesh_shape*/) const {
    return true;
  }
};

// Op parameters that change the rules (dims, keepdim, ...) as integers for the cache key.
using OpParams = std::initializer_list<int64_t>;

// The cheapest rule for these inputs, from the cache or computed (and cached). Inputs must share
// one mesh (MeshError otherwise); ValueError naming the op and placements when no rule applies.
const OpDecision& decide(const char* op, OpParams params, std::span<const DTensor* const> inputs, const OpRules& rules);
// The same for parameters whose count is only known at run time (a reshape's target shape).
const OpDecision& decide(const char* op, std::span<const int64_t> params, std::span<const DTensor* const> inputs,
                         const OpRules& rules);

// The inputs' local blocks under the decision (redistributing those whose placements differ;
// ValueError naming the op instead while a NoImplicitRedistribute guard is alive).
std::vector<Tensor> prepared_locals(const char* op, std::span<const DTensor* const> inputs, const OpDecision& decision);

// Wraps a local result as the decision's output (no communication, no check).
DTensor wrap_output(Tensor local, const DTensor& like, const OpDecision& decision);
DTensor wrap_output(Tensor local, const DTensor& like, const Placements& placements, const Shape& shape);

// The whole op: decide, prepare, run `local(locals, decision)`, wrap.
template <typename Local>
DTensor run_op(const char* op, OpParams params, std::initializer_list<const DTensor*> inputs, const OpRules& rules,
               const Local& local) {
  std::span<const DTensor* const> in(inputs.begin(), inputs.size());
  const OpDecision& decision = decide(op, params, in, rules);
  std::vector<Tensor> locals = prepared_locals(op, in, decision);
  return wrap_output(local(locals, decision), *in[0], decision);
}

// Rule helpers shared by several op files --------------------------------------------------------

// Every input Replicate, the output Replicate: the rule every op has (see OpRules::dim_rules).
DimRule all_replicate(size_t inputs);
// Partial(sum) and Partial(avg) are the reductions a linear function of its input preserves.
bool is_linear_partial(const Placement& p);

}  // namespace dtensor::detail
