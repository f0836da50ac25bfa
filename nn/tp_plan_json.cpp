// TpPlan's JSON reader, in a file of its own so that it links without the module tree and mesh
// that applying a plan needs (the fuzz build, fuzz/meson.build, compiles only the parsers).
#include "nn/tp_plan.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

namespace dtensor::nn {

// Rules keep the file's order (ordered_json), which decides between patterns matching one module.
// A pattern listed twice is refused rather than silently taking one of its strategies.
TpPlan TpPlan::from_json(const std::string& text) {
  nlohmann::ordered_json j;
  std::set<std::string> patterns;
  auto refuse_repeats = [&](int depth, nlohmann::ordered_json::parse_event_t event, nlohmann::ordered_json& parsed) {
    if (depth == 1 && event == nlohmann::ordered_json::parse_event_t::key) {
      const std::string pattern = parsed.get<std::string>();
      check<ValueError>(patterns.insert(pattern).second, "tp_plan", "pattern '{}' is listed twice", pattern);
    }
    return true;
  };
  try {
    j = nlohmann::ordered_json::parse(text, refuse_repeats);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    fail<ValueError>("tp_plan", "not valid JSON: {}", e.what());
  }
  check<ValueError>(j.is_object(), "tp_plan", "expected a JSON object of pattern -> strategy, got {}", j.type_name());
  TpPlan plan;
  for (const auto& [pattern, strategy] : j.items()) {
    check<ValueError>(!pattern.empty(), "tp_plan", "a pattern is empty; a pattern names a module (`*`: one component)");
    check<ValueError>(strategy.is_string(), "tp_plan", "the strategy of '{}' must be a string, got {}", pattern,
                      strategy.type_name());
    plan.rules.push_back({pattern, strategy.get<std::string>()});
  }
  return plan;
}

TpPlan TpPlan::from_json_file(const std::string& path) {
  std::ifstream in(path);
  check<ValueError>(in.good(), "tp_plan", "cannot read plan file '{}'", path);
  std::stringstream text;
  text << in.rdbuf();
  return from_json(text.str());
}

}  // namespace dtensor::nn
