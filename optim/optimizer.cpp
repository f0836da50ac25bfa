#include "optim/optimizer.hpp"

#include "dtensor/autograd.hpp"

#include <cmath>
#include <set>

namespace dtensor::optim {

namespace detail {

Tensor local_grad(const nn::Value& param) {
  if (param.is_distributed()) return autograd::grad(param.dtensor()).to_local();
  return autograd::grad(param.tensor());
}

DType compute_dtype(DType param_dtype) { return param_dtype == DType::F64 ? DType::F64 : DType::F32; }

nn::Value with_layout_of(const nn::Value& like, const Tensor& local) {
  if (!like.is_distributed()) return local;
  const DTensor& d = like.dtensor();
  return DTensor::from_local(local, d.mesh(), d.placements(), d.shape());
}

NamedParameters without_duplicates(const NamedParameters& params) {
  NamedParameters unique;
  std::set<const void*> seen;
  for (const auto& entry : params) {
    const nn::Value* param = entry.second;
    const void* leaf = nullptr;  // the autograd state copies of one leaf's handle share
    if (param != nullptr && param->defined()) {
      leaf = param->is_distributed() ? static_cast<const void*>(param->dtensor().autograd_meta().get())
                                     : static_cast<const void*>(param->tensor().autograd_meta().get());
    }
    if (param != nullptr && !seen.insert(param).second) continue;
    if (leaf != nullptr && !seen.insert(leaf).second) continue;
    unique.push_back(entry);
  }
  return unique;
}

const DeviceMesh* common_mesh(const NamedParameters& params, const char* op) {
  const DeviceMesh* mesh = nullptr;
  const std::string* first = nullptr;
  for (const auto& [name, param] : params) {
    if (param == nullptr || !param->is_distributed()) continue;
    const DeviceMesh& here = param->dtensor().mesh();
    if (mesh == nullptr) {
      mesh = &here;
      first = &name;
    } else if (!(here == *mesh)) {
      fail(op, "parameter \"{}\" is on {} but \"{}\" is on {}: all DTensor parameters must share one mesh", name,
           here.to_string(), *first, mesh->to_string());
    }
  }
  return mesh;
}

}  // namespace detail

namespace {

void check_parameter(const std::string& name, const nn::Value* param, const char* op) {
  check(param != nullptr && param->defined(), op, "parameter \"{}\" is {}", name,
        param == nullptr ? "a null pointer" : "not loaded");
  check<DTypeError>(is_floating(param->dtype()), op, "parameter \"{}\" has dtype {}; only floating parameters train",
                    name, dtype_name(param->dtype()));
  if (!param->is_distributed()) return;
  const Placements& placements = param->dtensor().placements();
  for (const Placement& p : placements) {
    check(!p.is_partial(), op, "parameter \"{}\" is placed {}: a Partial parameter has no per-rank value to update",
          name, placements_str(placements));
  }
}

}  // namespace

Optimizer::Optimizer(NamedParameters params, double lr, const char* op) : op_(op), params_(std::move(params)) {
  std::set<std::string> names;
  for (const auto& [name, param] : params_) {
    check(names.insert(name).second, op_, "parameter name \"{}\" is given twice", name);
    check_parameter(name, param, op_);
  }
  detail::common_mesh(params_, op_);
  params_ = detail::without_duplicates(params_);
  set_lr(lr);
}

void Optimizer::zero_grad() {
  for (const auto& [name, param] : params_) {
    if (param->is_distributed()) {
      autograd::zero_grad(param->dtensor());
    } else {
      autograd::zero_grad(param->tensor());
    }
  }
}

void Optimizer::set_lr(double lr) {
  check(std::isfinite(lr) && lr >= 0, op_, "lr must be a finite value >= 0, got {}", lr);
  lr_ = lr;
}

const nn::Value& Optimizer::state(const std::string& param_name, const std::string& which) const {
  auto param = states_.find(param_name);
  if (param == states_.end()) {
    bool known = false;
    for (const auto& entry : params_) known = known || entry.first == param_name;
    fail(op_, "parameter \"{}\" {}", param_name,
         known ? "has no state yet (it had no gradient at any step)" : "is not one of this optimizer's parameters");
  }
  auto state = param->second.find(which);
  check(state != param->second.end(), op_, "parameter \"{}\" has no state \"{}\"", param_name, which);
  return state->second;
}

bool Optimizer::has_state(size_t i, const std::string& which) const {
  auto param = states_.find(params_[i].first);
  return param != states_.end() && param->second.count(which) > 0;
}

nn::Value& Optimizer::state_or_zeros(size_t i, const std::string& which) {
  const nn::Value& param = *params_[i].second;
  auto [state, created] = states_[params_[i].first].try_emplace(which);
  if (created) {
    const Tensor& local = param.local();
    state->second = detail::with_layout_of(
        param, Tensor::zeros(local.shape(), detail::compute_dtype(local.dtype()), local.device()));
  }
  return state->second;
}

}  // namespace dtensor::optim
