// Optimizers over a model's parameters (docs/design.md section 14): what SGD and AdamW share.
//
//   optim::AdamW opt(model.named_parameters(), {.lr = 3e-4});
//   ag::backward(loss);
//   optim::clip_grad_norm(model, model.named_parameters(), 1.0);  // counts plain shares exactly
//   opt.step();        // updates every parameter with a gradient, in place, rank by rank
//   opt.zero_grad();   // zeros the gradients, keeping their buffers
//
// Parameters are nn::Values: plain tensors or DTensors, leaves whose gradients the autograd engine
// accumulated (autograd/autograd.hpp, dtensor/autograd.hpp). A DTensor's gradient has its
// placements, so the update is elementwise on this rank's block and step() never communicates.
#pragma once

#include "nn/value.hpp"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dtensor::optim {

// What nn::Module::named_parameters() returns. The optimizer keeps the pointers: the parameters
// must outlive it, and are updated in place in their storage, so the model sees every step.
using NamedParameters = std::vector<std::pair<std::string, nn::Value*>>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient; parameters without one are skipped, as in
  // torch. No communication.
  virtual void step() = 0;
  // Fills every gradient with zeros in place (autograd::zero_grad), keeping the buffers.
  void zero_grad();

  double lr() const { return lr_; }
  // ValueError naming lr when negative or not finite.
  void set_lr(double lr);

  const NamedParameters& parameters() const { return params_; }
  // One state of a parameter ("momentum_buffer" for SGD, "exp_avg" and "exp_avg_sq" for AdamW),
  // laid out as the parameter: a DTensor state has its mesh, placements and global shape, and
  // holds only this rank's block. f64 for f64 parameters, f32 otherwise (bf16 / f16 parameters
  // keep f32 states). States appear at the first step that finds the parameter's gradient;
  // ValueError for an unknown parameter or a state that does not exist (yet).
  const nn::Value& state(const std::string& param_name, const std::string& which) const;

 protected:
  // Checks the parameters on every rank: none null, names unique, floating dtypes (DTypeError
  // naming the parameter), no Partial placements, every DTensor on one mesh (ValueError naming
  // the parameter and both meshes). A parameter given again under another name (tied weights)
  // is kept once, under its first name. `op` names the optimizer in errors.
  Optimizer(NamedParameters params, double lr, const char* op);

  // The state `which` of parameter i, created as zeros laid out like it when missing. Updates
  // write into its block in place, so the buffer stays put.
  nn::Value& state_or_zeros(size_t i, const std::string& which);
  // Whether parameter i has the state `which`.
  bool has_state(size_t i, const std::string& which) const;

  const char* op_;
  NamedParameters params_;

 private:
  double lr_;
  std::map<std::string, std::map<std::string, nn::Value>> states_;  // parameter name -> which -> state
};

namespace detail {
// This rank's block of the parameter's gradient; undefined when it has none.
Tensor local_grad(const nn::Value& param);
// The dtype updates are computed in and states kept in: f64 for f64, f32 otherwise.
DType compute_dtype(DType param_dtype);
// `local` wrapped with the layout of `like` (a DTensor with its mesh, placements and shape, or a
// plain tensor); no communication.
nn::Value with_layout_of(const nn::Value& like, const Tensor& local);
// The parameters with each one kept once, under its first name: a later entry holding the same
// value (the same nn::Value, or a handle sharing its autograd state, as tied weights do) is
// dropped, as torch's named_parameters() drops duplicates.
NamedParameters without_duplicates(const NamedParameters& params);
// The one mesh every DTensor parameter lives on (null when none is a DTensor); ValueError naming
// the first parameter on another mesh and both meshes.
const DeviceMesh* common_mesh(const NamedParameters& params, const char* op);
}  // namespace detail

}  // namespace dtensor::optim
