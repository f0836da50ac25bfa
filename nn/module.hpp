// The module tree: layers with dotted names, declared parameters, and an optional parallel
// strategy installed by a tp_plan.
//
// A module declares each parameter with its full (unsharded) shape and dtype; loading fills it,
// partitioned by the module's strategy when one is installed (see nn/strategy.hpp), whole
// otherwise. Calling a module runs strategy->prepare_input, forward, strategy->prepare_output.
//
// A module of one tensor (Linear, Embedding, norms, MLPs, SparseMoE) overrides
// forward(const Value&). A module that takes more than its tensor (attention and decoder layers:
// positions, rotary tables, the KV cache; Experts::route: the routing) defines its own call with
// those inputs explicit and runs its computation through call_with_strategy, so its strategy
// prepares the tensor input and output as operator() does. No module reads state its caller did
// not pass.
//
//   auto mlp = std::make_shared<Module>("MLP");      // containers are plain modules
//   mlp->add_module("up", std::make_shared<Linear>(64, 256));
//   for (auto& [name, p] : mlp->named_parameters()) ...   // "up.weight", "up.bias"
#pragma once

#include "mesh/device_mesh.hpp"
#include "nn/value.hpp"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dtensor::nn {

class Strategy;

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // Runs the forward with the strategy's input and output preparation around it.
  Value operator()(const Value& x);

  // Registers a child under a local name (no dots); ValueError for a duplicate or dotted name.
  template <typename M>
  std::shared_ptr<M> add_module(const std::string& name, std::shared_ptr<M> child) {
    attach(name, child);
    return child;
  }
  // The child at a dotted path below this module, or nullptr.
  Module* find(const std::string& dotted) const;

  // Declares a parameter with its full shape; it stays undefined until loaded or set.
  void declare_parameter(const std::string& name, const Shape& shape, DType dtype);
  bool has_parameter(const std::string& name) const;
  Value& parameter(const std::string& name);  // ValueError naming the module's type otherwise
  const Value& parameter(const std::string& name) const;
  const Shape& parameter_shape(const std::string& name) const;  // the declared full shape
  DType parameter_dtype(const std::string& name) const;
  std::vector<std::string> parameter_names() const;
  // Marks parameter `name` as another module's, lent to this one call by call (tied weights: a
  // tied lm_head uses the embedding's weight). It stays declared, so plans and loaders still see
  // its name and shape, but named_parameters (and what walks it: to, optimizers, gradient
  // clipping, state dicts) leaves it out, so the one tensor is listed once, under its owner's
  // name, as torch's named_parameters() lists a tied parameter. ValueError for an unknown name.
  void mark_parameter_borrowed(const std::string& name);
  bool parameter_borrowed(const std::string& name) const;

  // ("", this) then every descendant as (dotted name, module), depth first, in registration order.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");
  // Every parameter of this subtree as (dotted name, value), but those marked borrowed.
  std::vector<std::pair<std::string, Value*>> named_parameters(const std::string& prefix = "");

  // Marks every loaded floating parameter of this subtree (Tensor or DTensor) a leaf that requires
  // a gradient (or no longer does): the forwards then record a graph, and autograd::backward fills
  // each parameter's autograd::grad, with a DTensor parameter's placements. Integer parameters are
  // left alone, and so is a value the module's strategy holds only to keep shapes alike
  // (Strategy::trains_here: the zero bias of ranks other than the first under rowwise splits).
  // ValueError if a parameter is not a leaf (it was set to an op's output).
  void requires_grad_(bool on = true);

  // Moves every loaded parameter of this subtree to `device` (a DTensor keeps its mesh, placements
  // and global shape; only this rank's block moves). Unloaded parameters stay unloaded; one that
  // required a gradient still does (a new leaf: gradients already accumulated stay behind).
  void to(Device device);
  // What to(Device) moves of a module's own state besides its parameters (a quantized weight).
  virtual void state_to(Device /*device*/) {}
  // Installed by apply_tp_plan; the mesh is the 1-D tensor-parallel mesh.
  void set_strategy(std::shared_ptr<const Strategy> strategy, DeviceMesh mesh);
  const Strategy* strategy() const { return strategy_.get(); }
  const DeviceMesh& strategy_mesh() const { return strategy_mesh_; }
  // Called by apply_tp_plan on every module once the plan's strategies are installed on the whole
  // tree, before any parameter loads: a module whose computation depends on how the plan split
  // its children (attention: the heads its projections leave on this rank) works that out here
  // from `tp_mesh`, and refuses a plan it cannot run with a typed error naming `name`, its dotted
  // path. The default does nothing.
  virtual void plan_applied(const std::string& /*name*/, const DeviceMesh& /*tp_mesh*/) {}
  // Called by the loaders (apply_tp_plan, load_unsharded) right after parameter `param` of this
  // module (named `name`, its dotted path) got its value: a module that keeps a parameter in
  // another form converts it here and frees the loaded value (a quantized Linear, nn/quant.hpp),
  // so that loading holds one loaded parameter at a time. The default does nothing.
  virtual void parameter_loaded(const std::string& /*name*/, const std::string& /*param*/) {}

  // How many random draws this module has made (Dropout: one Philox stream per call), so that
  // activation checkpointing can rewind it and a recomputed forward draws exactly as the first
  // one did (models/activation_checkpoint.hpp). Modules that draw nothing keep the defaults.
  virtual uint64_t random_calls() const { return 0; }
  virtual void set_random_calls(uint64_t /*calls*/) {}

 protected:
  // Modules of one tensor override this; containers and modules that take more inputs have none
  // (ValueError).
  virtual Value forward(const Value& x);
  // `body` run on x as the installed strategy prepares it, its result prepared likewise: what
  // operator() does around forward, for a module whose call takes more than its tensor.
  Value call_with_strategy(const Value& x, const std::function<Value(const Value&)>& body);

 private:
  struct Parameter {
    std::string name;
    Shape shape;
    DType dtype;
    Value value;
    bool borrowed = false;  // another module's, lent call by call (mark_parameter_borrowed)
  };
  void attach(const std::string& name, std::shared_ptr<Module> child);
  const Parameter& find_parameter(const std::string& name) const;

  std::string type_name_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::vector<Parameter> parameters_;
  std::shared_ptr<const Strategy> strategy_;
  DeviceMesh strategy_mesh_;
};

}  // namespace dtensor::nn
