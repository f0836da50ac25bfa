#include "nn/tp_plan.hpp"

#include <sstream>

namespace dtensor::nn {

namespace {

std::vector<std::string> components(const std::string& dotted) {
  std::vector<std::string> out;
  std::stringstream in(dotted);
  for (std::string part; std::getline(in, part, '.');) out.push_back(part);
  return out;
}

// The rule for a module: an exact name first, else the first matching pattern; nullptr if none.
const TpRule* rule_for(const TpPlan& plan, const std::string& name) {
  for (const TpRule& r : plan.rules)
    if (r.pattern == name) return &r;
  for (const TpRule& r : plan.rules)
    if (pattern_matches(r.pattern, name)) return &r;
  return nullptr;
}

// The source of `name` checked against the declared shape, converting to the declared dtype.
io::TensorSource checked_source(const SourceLookup& source_of, const std::string& name, const Shape& shape,
                                DType dtype) {
  io::TensorSource source = source_of(name);
  check<ShapeError>(source.shape == shape, "load",
                    "parameter '{}' has shape {} in the checkpoint, the model expects {}", name,
                    shape_str(source.shape), shape_str(shape));
  if (source.dtype == dtype) return source;
  // Read in the checkpoint's dtype, then convert into the caller's box.
  return {dtype, shape,
          [source](const Shape& offset, const Tensor& out) { out.copy_from(source.read(offset, out.shape())); }};
}

DeviceMesh tensor_parallel_mesh(const DeviceMesh& mesh) {
  if (mesh.ndim() == 1) return mesh;
  return mesh["tp"];  // MeshError when there is no dim named "tp"
}

// Checks the plan, installs its strategies and lets every module adapt to them, all before any
// parameter loads, so that a plan that cannot run fails before reading the checkpoint.
void install_plan(Module& root, const TpPlan& plan, const DeviceMesh& tp, const StrategyRegistry& registry) {
  const auto modules = root.named_modules();
  // Plans a strategy cannot carry out (attention heads that do not split).
  for (const auto& [name, module] : modules)
    if (const TpRule* rule = rule_for(plan, name)) registry.get(rule->strategy)->check_plan(*module, name, tp);
  for (const auto& [name, module] : modules)
    if (const TpRule* rule = rule_for(plan, name)) module->set_strategy(registry.get(rule->strategy), tp);
  // Parents whose computation follows their children's split (attention heads), once all are in place.
  for (const auto& [name, module] : modules) module->plan_applied(name, tp);
}

}  // namespace

bool pattern_matches(const std::string& pattern, const std::string& name) {
  std::vector<std::string> p = components(pattern), n = components(name);
  if (p.size() != n.size()) return false;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != "*" && p[i] != n[i]) return false;
  return true;
}

PlanReport apply_tp_plan(Module& root, const TpPlan& plan, const DeviceMesh& mesh, const SourceLookup& source_of,
                         const StrategyRegistry& registry) {
  for (const TpRule& r : plan.rules) registry.get(r.strategy);  // unknown names fail before any load
  const DeviceMesh tp = tensor_parallel_mesh(mesh);
  install_plan(root, plan, tp, registry);
  PlanReport report;
  std::vector<bool> used(plan.rules.size(), false);
  for (auto& [name, module] : root.named_modules()) {
    const TpRule* rule = rule_for(plan, name);
    if (rule) {
      used[size_t(rule - plan.rules.data())] = true;
      report.explain += fmt::format("{} ({}): {}\n", name, module->type_name(), rule->strategy);
    }
    for (const std::string& param : module->parameter_names()) {
      const std::string full = name.empty() ? param : name + "." + param;
      io::TensorSource source =
          checked_source(source_of, full, module->parameter_shape(param), module->parameter_dtype(param));
      if (rule) {
        module->parameter(param) = module->strategy()->partition(*module, param, source, tp);
        report.explain += fmt::format("  {}: {}\n", param, module->parameter(param).describe());
      } else {
        module->parameter(param) = source.read_all();
        report.uncovered_parameters.push_back(full);
      }
      module->parameter_loaded(name, param);
    }
  }
  for (size_t i = 0; i < plan.rules.size(); ++i)
    if (!used[i]) report.unmatched_rules.push_back(plan.rules[i].pattern);
  return report;
}

void load_unsharded(Module& root, const SourceLookup& source_of) {
  for (auto& [name, module] : root.named_modules()) {
    for (const std::string& param : module->parameter_names()) {
      const std::string full = name.empty() ? param : name + "." + param;
      module->parameter(param) =
          checked_source(source_of, full, module->parameter_shape(param), module->parameter_dtype(param)).read_all();
      module->parameter_loaded(name, param);
    }
  }
}

}  // namespace dtensor::nn
