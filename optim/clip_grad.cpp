#include "optim/clip_grad.hpp"

#include "collectives/runtime.hpp"
#include "dtensor/autograd.hpp"
#include "nn/strategy.hpp"
#include "optim/fused_cpu.hpp"
#include "tensor/ops.hpp"

#include <cmath>

namespace dtensor::optim {

namespace {

constexpr const char* kOp = "clip_grad_norm";

// Whether this rank's block of the gradient counts in the norm: a DTensor's on the ranks at
// coordinate 0 of every mesh dim it is replicated over, a plain tensor's (replicated over the whole
// mesh) at coordinate 0 of every dim, or everywhere without a mesh.
bool counted_here(const std::string& name, const nn::Value& param, const DeviceMesh* mesh) {
  if (mesh == nullptr) return true;
  const std::vector<int64_t>& coordinate = mesh->coordinate();
  if (!param.is_distributed()) {
    for (int64_t c : coordinate) {
      if (c != 0) return false;
    }
    return true;
  }
  const Placements placements = autograd::grad(param.dtensor()).placements();
  bool counted = true;
  for (size_t m = 0; m < placements.size(); ++m) {
    check(!placements[m].is_partial(), kOp,
          "the gradient of parameter \"{}\" is placed {}: a leaf's gradient is reduced by backward, never Partial",
          name, placements_str(placements));
    counted = counted && (!placements[m].is_replicate() || coordinate[m] == 0);
  }
  return counted;
}

double sum_of_squares(const Tensor& grad) {
  if (detail::fusable(grad, {})) return detail::sum_of_squares_fused(grad);
  Tensor g = grad.to(DType::F64);
  return sum(mul(g, g)).item<double>();
}

// Sums `value` over every rank of the mesh: nothing on one rank, one all_reduce over the whole
// mesh's ranks (the world's communicator when the mesh spans the world), else one per mesh dim of
// more than one rank (a 1-D mesh's one).
double sum_over_mesh(double value, const DeviceMesh& mesh, Device device) {
  if (mesh.size() == 1) return value;
  if (mesh.ndim() > 1 && mesh.size() == world().size()) {
    Tensor host = Tensor::full({1}, value, DType::F64);
    world().all_reduce(host);
    return host.item<double>();
  }
  Tensor buffer = Tensor::full({1}, value, DType::F64, device);
  for (int64_t m = 0; m < mesh.ndim(); ++m) {
    if (mesh.size(m) > 1) mesh.comm(m).all_reduce(buffer);
  }
  return buffer.item<double>();
}

// This rank's share of the norm's square from one gradient: a plain parameter of `model` that a
// strategy split counts the rows this rank is the first to hold; anything else counted_here decides.
double share_of_squares(const std::string& name, const nn::Value& param, const Tensor& grad, const DeviceMesh* mesh,
                        nn::Module* model) {
  if (model != nullptr && !param.is_distributed()) {
    const nn::PlainShare share = nn::plain_share_of(*model, name);
    if (!share.whole) {
      double sum = 0;
      for (const nn::PlainRun& run : share.runs) sum += sum_of_squares(grad.narrow(share.dim, run.local, run.count));
      return sum;
    }
  }
  return counted_here(name, param, mesh) ? sum_of_squares(grad) : 0.0;
}

double clip(const NamedParameters& params, double max_norm, nn::Module* model) {
  check(std::isfinite(max_norm) && max_norm > 0, kOp, "max_norm must be a finite value > 0, got {}", max_norm);
  autograd::NoGradGuard no_grad;
  const DeviceMesh* mesh = detail::common_mesh(params, kOp);
  if (mesh == nullptr && model != nullptr) mesh = nn::plan_mesh(*model);
  check<MeshError>(mesh == nullptr || mesh->is_member(), kOp, "this rank is not in the parameters' mesh {}",
                   mesh == nullptr ? "" : mesh->to_string());
  double local_sum = 0;
  Device device = Device::cpu();
  std::vector<Tensor> grads;
  for (const auto& [name, param] : detail::without_duplicates(params)) {
    check(param != nullptr, kOp, "parameter \"{}\" is a null pointer", name);
    Tensor grad = detail::local_grad(*param);
    if (!grad.defined()) continue;
    if (param->is_distributed()) device = grad.device();
    local_sum += share_of_squares(name, *param, grad, mesh, model);
    grads.push_back(grad);
  }
  const double total = std::sqrt(mesh == nullptr ? local_sum : sum_over_mesh(local_sum, *mesh, device));
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1) {
    for (const Tensor& grad : grads) {
      if (detail::fusable(grad, {})) {
        detail::scale_fused(grad, coef);
      } else {
        grad.copy_from(mul(grad, coef));
      }
    }
  }
  return total;
}

}  // namespace

double clip_grad_norm(const NamedParameters& params, double max_norm) { return clip(params, max_norm, nullptr); }

double clip_grad_norm(nn::Module& model, const NamedParameters& params, double max_norm) {
  return clip(params, max_norm, &model);
}

}  // namespace dtensor::optim
