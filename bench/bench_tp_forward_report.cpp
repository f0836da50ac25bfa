#include "bench_tp_forward_report.hpp"

#include "tensor/error.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>

namespace tp_forward_bench {

namespace fs = std::filesystem;
using dtensor::check;

namespace {

nlohmann::json to_json(const RunResult& r) {
  nlohmann::json linear = nlohmann::json::array();
  for (const LinearRate& l : r.linear) linear.push_back({{"flops", l.flops}, {"seconds", l.seconds}});
  return {{"np", r.np}, {"prefill_tokens", r.prefill_tokens}, {"decode_steps", r.decode_steps},
          {"load_s", r.load_s}, {"prefill_s", r.prefill_s}, {"decode_s", r.decode_s},
          {"linear", linear}, {"eigen_gflops", r.eigen_gflops}};
}

RunResult from_json(const nlohmann::json& j) {
  RunResult r;
  r.np = j.at("np").get<int>();
  r.prefill_tokens = j.at("prefill_tokens").get<int64_t>();
  r.decode_steps = j.at("decode_steps").get<int64_t>();
  r.load_s = j.at("load_s").get<double>();
  r.prefill_s = j.at("prefill_s").get<double>();
  r.decode_s = j.at("decode_s").get<double>();
  for (const auto& l : j.at("linear")) r.linear.push_back({l.at("flops").get<double>(), l.at("seconds").get<double>()});
  r.eigen_gflops = j.at("eigen_gflops").get<double>();
  return r;
}

const RunResult* find_np(const std::vector<RunResult>& series, int np) {
  auto it = std::find_if(series.begin(), series.end(), [np](const RunResult& r) { return r.np == np; });
  return it == series.end() ? nullptr : &*it;
}

double ratio(double base, double value) { return value > 0 ? base / value : 0.0; }

std::string per_rank_gflops(const RunResult& r) {
  std::vector<std::string> parts;
  for (const LinearRate& l : r.linear) parts.push_back(fmt::format("{:.1f}", l.gflops()));
  return fmt::format("{}", fmt::join(parts, " / "));
}

}  // namespace

double RunResult::linear_gflops_sum() const {
  double sum = 0;
  for (const LinearRate& l : linear) sum += l.gflops();
  return sum;
}

void save_result(const std::string& dir, const RunResult& result) {
  fs::create_directories(dir);
  const fs::path path = fs::path(dir) / fmt::format("np{}.json", result.np);
  std::ofstream file(path);
  file << to_json(result).dump(2) << "\n";
  file.close();
  check(bool(file), "bench_tp_forward", "{}: cannot write the results", path.string());
}

std::vector<RunResult> load_results(const std::string& dir) {
  static const std::regex name(R"(np\d+\.json)");
  std::vector<RunResult> series;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (!std::regex_match(entry.path().filename().string(), name)) continue;
    std::ifstream file(entry.path());
    series.push_back(from_json(nlohmann::json::parse(file)));
  }
  std::sort(series.begin(), series.end(), [](const RunResult& a, const RunResult& b) { return a.np < b.np; });
  return series;
}

void print_table(const std::vector<RunResult>& series) {
  const RunResult* base = find_np(series, 1);
  fmt::print("{:>3} {:>8} {:>12} {:>12} {:>9} {:>9} {:>9} {:>10} {:>22}\n", "np", "load_s", "prefill_t/s",
             "decode_t/s", "prefill_x", "decode_x", "speedup", "lin_GF/s", "lin_GF/s_per_rank");
  for (const RunResult& r : series) {
    const double prefill_rate = double(r.prefill_tokens) / r.prefill_s;
    const double decode_rate = r.decode_s > 0 ? double(r.decode_steps) / r.decode_s : 0.0;
    const auto speedup = [&](double b, double v) { return base ? fmt::format("{:.2f}", ratio(b, v)) : "-"; };
    fmt::print("{:>3} {:>8.2f} {:>12.1f} {:>12.2f} {:>9} {:>9} {:>9} {:>10.1f} {:>22}\n", r.np, r.load_s,
               prefill_rate, decode_rate, speedup(base ? base->prefill_s : 0, r.prefill_s),
               speedup(base ? base->decode_s : 0, r.decode_s), speedup(base ? base->total_s() : 0, r.total_s()),
               r.linear_gflops_sum(), per_rank_gflops(r));
  }
  if (base && base->eigen_gflops > 0) {
    fmt::print("reference: raw Eigen GEMM (x @ W^T) on one prefill's Linear shapes, one process: {:.1f} GFLOP/s\n",
               base->eigen_gflops);
  }
}

void print_summary(const std::vector<RunResult>& series) {
  const RunResult* np1 = find_np(series, 1);
  const RunResult* np2 = find_np(series, 2);
  const RunResult* np4 = find_np(series, 4);
  check(np1 && np2, "bench_tp_forward", "--summary needs the np 1 and np 2 results in the results directory");
  fmt::print("tp_forward: speedup_np2={:.2f} linear_gflops_np1={:.1f} prefill_speedup_np2={:.2f} "
             "decode_speedup_np2={:.2f} speedup_np4={}\n",
             ratio(np1->total_s(), np2->total_s()), np1->linear_gflops_sum(), ratio(np1->prefill_s, np2->prefill_s),
             ratio(np1->decode_s, np2->decode_s),
             np4 ? fmt::format("{:.2f}", ratio(np1->total_s(), np4->total_s())) : "-");
}

}  // namespace tp_forward_bench
