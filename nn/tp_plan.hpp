// tp_plan: which strategy each module of a tree runs, by name pattern, and loading under it.
//
// A plan maps patterns of dotted module names to strategy names, as Hugging Face's tp_plan:
// `*` stands for exactly one name component ("layers.*.self_attn.q_proj"). A module takes the
// rule that names it exactly, else the first pattern (in plan order) that matches it.
//
//   TpPlan plan = TpPlan::from_json_file("plan.json");   // {"layers.*.mlp.up_proj": "colwise", ...}
//   PlanReport report = apply_tp_plan(model, plan, mesh["tp"], [&](const std::string& name) {
//     return checkpoint.source(name);                      // a TensorSource per parameter name
//   });
//   fmt::print("{}", report.explain);
#pragma once

#include "nn/strategy.hpp"

#include <functional>
#include <string>
#include <vector>

namespace dtensor::nn {

struct TpRule {
  std::string pattern;
  std::string strategy;
};

struct TpPlan {
  std::vector<TpRule> rules;

  // A JSON object {"pattern": "strategy", ...} (ValueError naming the file or key when malformed).
  static TpPlan from_json(const std::string& text);
  static TpPlan from_json_file(const std::string& path);
};

// Whether a dotted module name matches a pattern (`*` = one component).
bool pattern_matches(const std::string& pattern, const std::string& name);

struct PlanReport {
  std::vector<std::string> unmatched_rules;       // patterns that named no module
  std::vector<std::string> uncovered_parameters;  // loaded whole, no strategy
  // One line per module with a strategy, then one per parameter: placements and local shape.
  std::string explain;
};

// Looks up the full tensor of a dotted parameter name ("layers.0.mlp.up_proj.weight").
using SourceLookup = std::function<io::TensorSource(const std::string& parameter)>;

// Installs the plan's strategies on `root`'s modules, calls every module's plan_applied, and loads
// every parameter through its module's strategy (whole and plain where no rule covers it). `mesh` is the
// tensor-parallel mesh: 1-D, or an N-D mesh with a dim named "tp". Unknown strategy names are a ValueError raised
// before anything is loaded; a source whose shape differs from the declared one is a ShapeError naming the parameter; a
// source of another dtype is converted to the declared one.
PlanReport apply_tp_plan(Module& root, const TpPlan& plan, const DeviceMesh& mesh, const SourceLookup& source_of,
                         const StrategyRegistry& registry = StrategyRegistry::global());

// Loads every parameter whole (no plan): the unsharded model.
void load_unsharded(Module& root, const SourceLookup& source_of);

}  // namespace dtensor::nn
