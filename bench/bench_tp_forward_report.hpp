// The results of bench_tp_forward runs: stored per rank count as JSON (DIR/np<N>.json), printed
// as one table with speedups over the np 1 run, and the tp_forward: summary line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tp_forward_bench {

// One rank's Linear layers over the prefills.
struct LinearRate {
  double flops = 0, seconds = 0;
  double gflops() const { return seconds > 0 ? flops / seconds / 1e9 : 0.0; }
};

struct RunResult {
  int np = 0;
  int64_t prefill_tokens = 0, decode_steps = 0;
  double load_s = 0, prefill_s = 0, decode_s = 0;  // slowest rank; median over repeats
  std::vector<LinearRate> linear;                    // per rank
  double eigen_gflops = 0;                           // raw Eigen reference (np 1 only; 0 otherwise)

  double total_s() const { return prefill_s + decode_s; }
  double linear_gflops_sum() const;
};

void save_result(const std::string& dir, const RunResult& result);
// Every np<N>.json in dir, by rank count.
std::vector<RunResult> load_results(const std::string& dir);

void print_table(const std::vector<RunResult>& series);
// "tp_forward: speedup_np2=X linear_gflops_np1=X ..."; ValueError without the np 1 and np 2 runs.
void print_summary(const std::vector<RunResult>& series);

}  // namespace tp_forward_bench
