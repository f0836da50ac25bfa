#include "nn/strategy.hpp"

#include "autograd/node.hpp"
#include "dtensor/autograd.hpp"
#include "placements/sharding.hpp"

#include <fmt/ranges.h>

namespace dtensor::nn {

void StrategyRegistry::add(const std::string& name, std::shared_ptr<const Strategy> strategy) {
  check<ValueError>(strategy != nullptr, "StrategyRegistry::add", "strategy '{}' is null", name);
  check<ValueError>(!contains(name), "StrategyRegistry::add", "a strategy named '{}' is already registered", name);
  strategies_[name] = std::move(strategy);
}

std::shared_ptr<const Strategy> StrategyRegistry::get(const std::string& name) const {
  auto it = strategies_.find(name);
  if (it == strategies_.end()) {
    std::vector<std::string> known = names();
    fail<ValueError>("tp_plan", "unknown strategy '{}' (registered: {})", name, fmt::join(known, ", "));
  }
  return it->second;
}

std::vector<std::string> StrategyRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : strategies_) out.push_back(name);
  return out;
}

Tensor read_local_block(const io::TensorSource& source, const DeviceMesh& mesh, const Placements& placements) {
  Placements normalized = normalize_placements(placements, int64_t(source.shape.size()), mesh.ndim(), "partition");
  Block block = local_block(source.shape, mesh.shape(), mesh.coordinate(), normalized);
  Tensor local = source.read(block.offset, block.shape);
  check<ShapeError>(local.shape() == block.shape, "partition", "the source returned a block of shape {}, expected {}",
                    shape_str(local.shape()), shape_str(block.shape));
  return local;
}

DTensor read_sharded(const io::TensorSource& source, const DeviceMesh& mesh, const Placements& placements) {
  return DTensor::from_local(read_local_block(source, mesh, placements), mesh, placements, source.shape);
}

Tensor read_on_first_rank(const io::TensorSource& source, const DeviceMesh& mesh) {
  return is_first_rank(mesh) ? source.read_all() : Tensor::zeros(source.shape, source.dtype);
}

bool is_first_rank(const DeviceMesh& mesh) { return mesh.coordinate()[0] == 0; }

PlainShare plain_share_of(const Module& model, const std::string& name) {
  const size_t dot = name.rfind('.');
  const Module* owner = dot == std::string::npos ? &model : model.find(name.substr(0, dot));
  const std::string param = dot == std::string::npos ? name : name.substr(dot + 1);
  check(owner != nullptr && owner->has_parameter(param), "plain_share_of", "no module holds parameter '{}'", name);
  if (owner->strategy() == nullptr) return {};
  return owner->strategy()->plain_share(*owner, param, owner->strategy_mesh());
}

const DeviceMesh* plan_mesh(Module& model) {
  if (model.strategy() != nullptr) return &model.strategy_mesh();
  for (const auto& [name, module] : model.named_modules()) {
    if (module->strategy() != nullptr) return &module->strategy_mesh();
  }
  return nullptr;
}

PlainShare block_share(const Shape& full, int64_t dim, const DeviceMesh& mesh) {
  const Block block = local_block(full, mesh.shape(), mesh.coordinate(), {Shard(dim)});
  return {false, dim, {{block.offset[size_t(dim)], 0, block.shape[size_t(dim)]}}};
}

Tensor diverging_local(const DTensor& replicated) { return autograd::to_local(replicated, {Partial()}); }

Value replicated_plain(const Value& x) {
  if (!x.is_distributed()) return x;
  return x.dtensor().redistribute({Replicate()}).to_local();
}

Value replicated_for_split(const Value& x, const DeviceMesh& mesh) {
  if (x.is_distributed()) return diverging_local(x.dtensor().redistribute({Replicate()}));
  if (!autograd::should_record(x.tensor())) return x;
  return diverging_local(DTensor::from_local(x.tensor(), mesh, {Replicate()}, x.shape()));
}

Tensor all_reduce_partial(const Tensor& partial, const DeviceMesh& mesh) {
  return DTensor::from_local(partial, mesh, {Partial()}, partial.shape()).redistribute({Replicate()}).to_local();
}

}  // namespace dtensor::nn
