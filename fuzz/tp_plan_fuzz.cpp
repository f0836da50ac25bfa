// Fuzzes TpPlan::from_json, the tp_plan JSON reader: a plan it accepts holds the object's rules.
#include "fuzz/fuzz_util.hpp"
#include "nn/tp_plan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(dtensor::fuzz::as_text(data, size));
  dtensor::fuzz::expect_typed_errors([&] {
    const dtensor::nn::TpPlan plan = dtensor::nn::TpPlan::from_json(text);
    FUZZ_CHECK(plan.rules.empty() || text.find(':') != std::string::npos);
  });
  return 0;
}
