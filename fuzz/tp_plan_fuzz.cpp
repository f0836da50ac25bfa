// Fuzzes TpPlan::from_json, the tp_plan JSON reader: a plan it accepts reads back the same from
// the JSON object of its own rules.
#include "fuzz/fuzz_util.hpp"
#include "nn/tp_plan.hpp"

#include <nlohmann/json.hpp>

namespace {

void check_round_trip(const dtensor::nn::TpPlan& plan) {
  nlohmann::ordered_json object = nlohmann::ordered_json::object();  // rules keep their order
  for (const dtensor::nn::TpRule& rule : plan.rules) object[rule.pattern] = rule.strategy;
  const dtensor::nn::TpPlan again = dtensor::nn::TpPlan::from_json(object.dump());
  FUZZ_CHECK(again.rules.size() == plan.rules.size());
  for (size_t i = 0; i < plan.rules.size(); ++i) {
    FUZZ_CHECK(again.rules[i].pattern == plan.rules[i].pattern && again.rules[i].strategy == plan.rules[i].strategy);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(dtensor::fuzz::as_text(data, size));
  dtensor::fuzz::expect_typed_errors([&] { check_round_trip(dtensor::nn::TpPlan::from_json(text)); });
  return 0;
}
