#include "bench_tp_forward_report.hpp"

#include "tensor/error.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>

namespace tp_forward_bench {

namespace fs = std::filesystem;
using dtensor::check;

namespace {

nlohmann::json to_json(const RunResult& r) {
  nlohmann::json linear = nlohmann::json::array();
  for (const LinearRate& l : r.linear) linear.push_back({{"flops", l.flops}, {"seconds", l.seconds}});
  return {{"dtype", r.dtype},
          {"np", r.np},
          {"threads", r.threads},
          {"prefill_tokens", r.prefill_tokens},
          {"decode_steps", r.decode_steps},
          {"load_s", r.load_s},
          {"prefill_s", r.prefill_s},
          {"decode_s", r.decode_s},
          {"linear", linear},
          {"onednn_gflops", r.onednn_gflops},
          {"read_gbps", r.read_gbps},
          {"decode_weight_bytes", r.decode_weight_bytes}};
}

RunResult from_json(const nlohmann::json& j) {
  RunResult r;
  r.dtype = j.at("dtype").get<std::string>();
  r.np = j.at("np").get<int>();
  r.threads = j.at("threads").get<int>();
  r.prefill_tokens = j.at("prefill_tokens").get<int64_t>();
  r.decode_steps = j.at("decode_steps").get<int64_t>();
  r.load_s = j.at("load_s").get<double>();
  r.prefill_s = j.at("prefill_s").get<double>();
  r.decode_s = j.at("decode_s").get<double>();
  for (const auto& l : j.at("linear")) r.linear.push_back({l.at("flops").get<double>(), l.at("seconds").get<double>()});
  r.onednn_gflops = j.at("onednn_gflops").get<double>();
  r.read_gbps = j.at("read_gbps").get<double>();
  r.decode_weight_bytes = j.at("decode_weight_bytes").get<double>();
  return r;
}

const RunResult* find_run(const std::vector<RunResult>& series, const std::string& dtype, int np, int threads) {
  auto it = std::find_if(series.begin(), series.end(),
                         [&](const RunResult& r) { return r.dtype == dtype && r.np == np && r.threads == threads; });
  return it == series.end() ? nullptr : &*it;
}

std::optional<TorchRun> find_torch(const std::vector<TorchRun>& torch, const std::string& dtype, int threads) {
  for (const TorchRun& t : torch) {
    if (t.dtype == dtype && t.threads == threads) return t;
  }
  return std::nullopt;
}

double ratio(double num, double den) { return den > 0 ? num / den : 0.0; }

std::string per_rank_gflops(const RunResult& r) {
  std::vector<std::string> parts;
  for (const LinearRate& l : r.linear) parts.push_back(fmt::format("{:.1f}", l.gflops()));
  return fmt::format("{}", fmt::join(parts, " / "));
}

std::string or_na(std::optional<double> v) { return v ? fmt::format("{:.2f}", *v) : "n/a"; }

// Ours over torch's tokens/s (higher is better for us), for one metric.
std::optional<double> vs_torch(const RunResult* ours, const std::optional<TorchRun>& torch, bool prefill) {
  if (!ours || !torch) return std::nullopt;
  return prefill ? ratio(ours->prefill_rate(), torch->prefill_rate) : ratio(ours->decode_rate(), torch->decode_rate);
}

void print_dtype_table(const std::vector<RunResult>& series, const std::vector<TorchRun>& torch,
                       const std::string& dtype) {
  const RunResult* base = find_run(series, dtype, 1, 1);
  fmt::print("{}:\n{:>10} {:>7} {:>12} {:>11} {:>10} {:>9} {:>9} {:>9} {:>10} {:>20}\n", dtype, "ranks x thr", "load_s",
             "prefill_t/s", "decode_t/s", "prefill_x", "decode_x", "speedup", "vs_torch", "lin_GF/s",
             "lin_GF/s_per_rank");
  for (const RunResult& r : series) {
    if (r.dtype != dtype) continue;
    const auto x = [&](double b, double v) { return base ? fmt::format("{:.2f}", ratio(b, v)) : "-"; };
    const std::optional<TorchRun> peer = find_torch(torch, dtype, r.np * r.threads);
    const std::string vs =
        peer ? fmt::format("{:.2f}/{:.2f}", *vs_torch(&r, peer, true), *vs_torch(&r, peer, false)) : "n/a";
    fmt::print("{:>10} {:>7.2f} {:>12.1f} {:>11.2f} {:>10} {:>9} {:>9} {:>9} {:>10.1f} {:>20}\n",
               fmt::format("{} x {}", r.np, r.threads), r.load_s, r.prefill_rate(), r.decode_rate(),
               x(base ? base->prefill_s : 0, r.prefill_s), x(base ? base->decode_s : 0, r.decode_s),
               x(base ? base->total_s() : 0, r.total_s()), vs, r.linear_gflops_sum(), per_rank_gflops(r));
  }
  for (const TorchRun& t : torch) {
    if (t.dtype != dtype) continue;
    fmt::print("{:>10} {:>7} {:>12.1f} {:>11.2f}   (transformers + torch, {} thread(s))\n",
               fmt::format("torch x {}", t.threads), "-", t.prefill_rate, t.decode_rate, t.threads);
  }
  if (base && base->onednn_gflops > 0) {
    fmt::print(
        "  reference, 1 thread: raw oneDNN matmul on one prefill's Linear shapes {:.1f} GFLOP/s; a core reads "
        "{:.1f} GB/s; a decoded token reads {:.0f} MiB of weights\n",
        base->onednn_gflops, base->read_gbps, base->decode_weight_bytes / (1 << 20));
  }
}

// Weight bytes per decoded token x tokens/s over the single-core read rate.
double decode_bw_fraction(const RunResult& r) {
  return ratio(r.decode_weight_bytes * r.decode_rate() / 1e9, r.read_gbps);
}

}  // namespace

double RunResult::linear_gflops_sum() const {
  double sum = 0;
  for (const LinearRate& l : linear) sum += l.gflops();
  return sum;
}

void save_result(const std::string& dir, const RunResult& result) {
  fs::create_directories(dir);
  const fs::path path = fs::path(dir) / fmt::format("np{}-t{}-{}.json", result.np, result.threads, result.dtype);
  std::ofstream file(path);
  file << to_json(result).dump(2) << "\n";
  file.close();
  check(bool(file), "bench_tp_forward", "{}: cannot write the results", path.string());
}

std::vector<RunResult> load_results(const std::string& dir) {
  static const std::regex name(R"(np\d+-t\d+-\w+\.json)");
  std::vector<RunResult> series;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (!std::regex_match(entry.path().filename().string(), name)) continue;
    std::ifstream file(entry.path());
    series.push_back(from_json(nlohmann::json::parse(file)));
  }
  std::sort(series.begin(), series.end(), [](const RunResult& a, const RunResult& b) {
    return std::tie(a.dtype, a.np, a.threads) < std::tie(b.dtype, b.np, b.threads);
  });
  return series;
}

std::vector<TorchRun> load_torch(const std::string& dir) {
  const fs::path path = fs::path(dir) / "torch.json";
  if (!fs::exists(path)) return {};
  std::ifstream file(path);
  const nlohmann::json j = nlohmann::json::parse(file);
  std::vector<TorchRun> runs;
  for (const auto& r : j.at("runs")) {
    runs.push_back({r.at("dtype").get<std::string>(), r.at("threads").get<int>(),
                    r.at("prefill_tokens_per_s").get<double>(), r.at("decode_tokens_per_s").get<double>()});
  }
  return runs;
}

void print_table(const std::vector<RunResult>& series, const std::vector<TorchRun>& torch) {
  for (const char* dtype : {"f32", "bf16"}) print_dtype_table(series, torch, dtype);
  fmt::print("(vs_torch: our prefill / decode tokens/s over transformers + torch on as many threads in all)\n");
}

void print_summary(const std::vector<RunResult>& series, const std::vector<TorchRun>& torch) {
  const RunResult* np1 = find_run(series, "f32", 1, 1);
  const RunResult* np2 = find_run(series, "f32", 2, 1);
  const RunResult* np4 = find_run(series, "f32", 4, 1);
  const RunResult* bf1 = find_run(series, "bf16", 1, 1);
  check(np1 && np2, "bench_tp_forward", "--summary needs the f32 np 1 / 1 thread and np 2 results");
  const auto linear_vs_onednn = [](const RunResult* r) {
    return r ? std::optional(ratio(r->linear_gflops_sum(), r->onednn_gflops)) : std::nullopt;
  };
  std::optional<double> linear = linear_vs_onednn(np1), bw = decode_bw_fraction(*np1);
  if (bf1) {
    linear = std::min(*linear, *linear_vs_onednn(bf1));
    bw = std::min(*bw, decode_bw_fraction(*bf1));
  }
  const auto f32_1 = find_torch(torch, "f32", 1), bf16_1 = find_torch(torch, "bf16", 1);
  fmt::print(
      "tp_forward: speedup_np2={:.2f} linear_gflops_np1={:.1f} prefill_speedup_np2={:.2f} "
      "decode_speedup_np2={:.2f} "
      "speedup_np4={} prefill_vs_torch_f32={} decode_vs_torch_f32={} prefill_vs_torch_bf16={} "
      "decode_vs_torch_bf16={} prefill_np2_vs_torch_2threads={} linear_vs_onednn={} decode_bw_fraction={} "
      "bf16_prefill_vs_f32={} bf16_decode_vs_f32={}\n",
      ratio(np1->total_s(), np2->total_s()), np1->linear_gflops_sum(), ratio(np1->prefill_s, np2->prefill_s),
      ratio(np1->decode_s, np2->decode_s), np4 ? fmt::format("{:.2f}", ratio(np1->total_s(), np4->total_s())) : "-",
      or_na(vs_torch(np1, f32_1, true)), or_na(vs_torch(np1, f32_1, false)), or_na(vs_torch(bf1, bf16_1, true)),
      or_na(vs_torch(bf1, bf16_1, false)), or_na(vs_torch(np2, find_torch(torch, "f32", 2), true)), or_na(linear),
      or_na(bw), or_na(bf1 ? std::optional(ratio(bf1->prefill_rate(), np1->prefill_rate())) : std::nullopt),
      or_na(bf1 ? std::optional(ratio(bf1->decode_rate(), np1->decode_rate())) : std::nullopt));
}

}  // namespace tp_forward_bench
