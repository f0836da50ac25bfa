#include "dtensor/cost_model.hpp"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

namespace dtensor {

namespace {
// nccl-tests bus-bandwidth factors: busbw = algbw * factor.
double bus_factor(CollectiveKind kind, int64_t group) {
  double k = double(group);
  return kind == CollectiveKind::AllReduce ? 2 * (k - 1) / k : (k - 1) / k;
}

const CollectiveCost& cost_of(const CostModel& model, CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::AllGather:
      return model.all_gather;
    case CollectiveKind::AllReduce:
      return model.all_reduce;
    case CollectiveKind::ReduceScatter:
      return model.reduce_scatter;
    case CollectiveKind::AllToAll:
      return model.all_to_all;
    default:
      fail<ValueError>("CostModel", "no cost for collective {}", collective_name(kind));
  }
}

CollectiveCost read_cost(const nlohmann::json& j, const char* key, CollectiveCost fallback) {
  if (!j.contains(key)) return fallback;
  const auto& c = j.at(key);
  return {c.value("latency_us", fallback.latency_us), c.value("busbw_gbps", fallback.busbw_gbps)};
}
}  // namespace

double CostModel::collective_us(CollectiveKind kind, int64_t bytes, int64_t group) const {
  if (group <= 1) return 0.0;
  const CollectiveCost& c = cost_of(*this, kind);
  return c.latency_us + double(bytes) * bus_factor(kind, group) / (c.busbw_gbps * 1e3);
}

CostModel CostModel::from_file(const std::string& path) {
  std::ifstream in(path);
  check<ValueError>(bool(in), "CostModel::from_file", "cannot open '{}'", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail<ValueError>("CostModel::from_file", "'{}' is not valid JSON: {}", path, e.what());
  }
  CostModel m;
  m.all_gather = read_cost(j, "all_gather", m.all_gather);
  m.all_reduce = read_cost(j, "all_reduce", m.all_reduce);
  m.reduce_scatter = read_cost(j, "reduce_scatter", m.reduce_scatter);
  m.all_to_all = read_cost(j, "all_to_all", m.all_to_all);
  m.memory_gbps = j.value("memory_gbps", m.memory_gbps);
  return m;
}

const CostModel& CostModel::current() {
  static const CostModel model = [] {
    const char* path = std::getenv("DTENSOR_COST_MODEL");
    return path && *path ? from_file(path) : CostModel{};
  }();
  return model;
}

}  // namespace dtensor
