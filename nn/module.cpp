#include "nn/module.hpp"

#include "dtensor/autograd.hpp"
#include "nn/strategy.hpp"

#include <fmt/ranges.h>

namespace dtensor::nn {

// Value ------------------------------------------------------------------------------------------

// (check() would format its message arguments eagerly, reading the alternative not held.)
const Tensor& Value::tensor(const char* what) const {
  if (is_distributed()) {
    fail<ValueError>(what, "expected a plain tensor, got a DTensor with placements {}",
                     placements_str(std::get<DTensor>(v_).placements()));
  }
  return std::get<Tensor>(v_);
}

const DTensor& Value::dtensor(const char* what) const {
  if (!is_distributed()) {
    fail<ValueError>(what, "expected a DTensor, got a plain tensor of shape {}",
                     shape_str(std::get<Tensor>(v_).shape()));
  }
  return std::get<DTensor>(v_);
}

const Tensor& Value::local() const {
  return is_distributed() ? std::get<DTensor>(v_).local_tensor() : std::get<Tensor>(v_);
}

Shape Value::shape() const { return is_distributed() ? std::get<DTensor>(v_).shape() : std::get<Tensor>(v_).shape(); }

std::string Value::describe() const {
  if (!defined()) return "undefined";
  if (!is_distributed()) return fmt::format("Tensor {} {}", shape_str(shape()), dtype());
  const DTensor& d = std::get<DTensor>(v_);
  return fmt::format("DTensor {} global {} local {} {}", placements_str(d.placements()), shape_str(d.shape()),
                     shape_str(d.local_tensor().shape()), dtype());
}

// Module -----------------------------------------------------------------------------------------

Value Module::operator()(const Value& x) {
  if (!strategy_) return forward(x);
  Value in = strategy_->prepare_input(x, *this, strategy_mesh_);
  return strategy_->prepare_output(forward(in), *this, strategy_mesh_);
}

Value Module::call_with_strategy(const Value& x, const std::function<Value(const Value&)>& body) {
  if (!strategy_) return body(x);
  Value in = strategy_->prepare_input(x, *this, strategy_mesh_);
  return strategy_->prepare_output(body(in), *this, strategy_mesh_);
}

Value Module::forward(const Value&) {
  fail<ValueError>("Module::forward",
                   "a {} module has no forward of one tensor; call its children, or its call operator with its inputs",
                   type_name_);
}

void Module::attach(const std::string& name, std::shared_ptr<Module> child) {
  check<ValueError>(!name.empty() && name.find('.') == std::string::npos, "add_module",
                    "a child name must be non-empty without dots, got '{}'", name);
  check<ValueError>(child != nullptr, "add_module", "child '{}' is null", name);
  for (const auto& [existing, _] : children_) {
    check<ValueError>(existing != name, "add_module", "{} already has a child named '{}'", type_name_, name);
  }
  children_.emplace_back(name, std::move(child));
}

Module* Module::find(const std::string& dotted) const {
  const size_t dot = dotted.find('.');
  const std::string head = dotted.substr(0, dot);
  for (const auto& [name, child] : children_) {
    if (name != head) continue;
    return dot == std::string::npos ? child.get() : child->find(dotted.substr(dot + 1));
  }
  return nullptr;
}

void Module::declare_parameter(const std::string& name, const Shape& shape, DType dtype) {
  check<ValueError>(!has_parameter(name), "declare_parameter", "{} already has a parameter '{}'", type_name_, name);
  parameters_.push_back({name, shape, dtype, Value()});
}

bool Module::has_parameter(const std::string& name) const {
  for (const Parameter& p : parameters_)
    if (p.name == name) return true;
  return false;
}

const Module::Parameter& Module::find_parameter(const std::string& name) const {
  for (const Parameter& p : parameters_)
    if (p.name == name) return p;
  std::vector<std::string> names = parameter_names();
  fail<ValueError>("parameter", "{} has no parameter '{}' (it has: {})", type_name_, name, fmt::join(names, ", "));
}

Value& Module::parameter(const std::string& name) { return const_cast<Parameter&>(find_parameter(name)).value; }
const Value& Module::parameter(const std::string& name) const { return find_parameter(name).value; }
const Shape& Module::parameter_shape(const std::string& name) const { return find_parameter(name).shape; }
DType Module::parameter_dtype(const std::string& name) const { return find_parameter(name).dtype; }

std::vector<std::string> Module::parameter_names() const {
  std::vector<std::string> names;
  for (const Parameter& p : parameters_) names.push_back(p.name);
  return names;
}

void Module::mark_parameter_borrowed(const std::string& name) {
  const_cast<Parameter&>(find_parameter(name)).borrowed = true;
}

bool Module::parameter_borrowed(const std::string& name) const { return find_parameter(name).borrowed; }

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out = {{prefix, this}};
  for (const auto& [name, child] : children_) {
    for (auto& entry : child->named_modules(prefix.empty() ? name : prefix + "." + name)) out.push_back(entry);
  }
  return out;
}

std::vector<std::pair<std::string, Value*>> Module::named_parameters(const std::string& prefix) {
  std::vector<std::pair<std::string, Value*>> out;
  for (auto& [path, module] : named_modules(prefix)) {
    for (Parameter& p : module->parameters_) {
      if (!p.borrowed) out.emplace_back(path.empty() ? p.name : path + "." + p.name, &p.value);
    }
  }
  return out;
}

namespace {
// Marks the leaf a Value holds; the slot is per handle, so the marked handle is stored back.
void set_value_requires_grad(Value& value, bool on) {
  if (value.is_distributed()) {
    DTensor d = value.dtensor();
    autograd::set_requires_grad(d, on);
    value = d;
  } else {
    Tensor t = value.tensor();
    autograd::set_requires_grad(t, on);
    value = t;
  }
}

bool value_requires_grad(const Value& value) {
  return value.is_distributed() ? autograd::requires_grad(value.dtensor()) : autograd::requires_grad(value.tensor());
}
}  // namespace

void Module::requires_grad_(bool on) {
  for (auto& [path, module] : named_modules()) {
    for (Parameter& p : module->parameters_) {
      const bool trains =
          module->strategy_ == nullptr || module->strategy_->trains_here(*module, p.name, module->strategy_mesh_);
      if (p.value.defined() && !p.borrowed && is_floating(p.value.dtype()) && trains) {
        set_value_requires_grad(p.value, on);
      }
    }
  }
}

void Module::to(Device device) {
  for (auto& [name, value] : named_parameters()) {
    if (!value->defined()) continue;
    const bool wanted = value_requires_grad(*value);
    if (value->is_distributed()) {
      const DTensor& d = value->dtensor();
      *value = DTensor::from_local(d.local_tensor().to(device), d.mesh(), d.placements(), d.shape());
    } else {
      *value = value->tensor().to(device);
    }
    if (wanted) set_value_requires_grad(*value, true);
  }
  for (auto& [name, module] : named_modules()) module->state_to(device);
}

void Module::set_strategy(std::shared_ptr<const Strategy> strategy, DeviceMesh mesh) {
  strategy_ = std::move(strategy);
  strategy_mesh_ = std::move(mesh);
}

}  // namespace dtensor::nn
