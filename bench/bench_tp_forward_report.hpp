// The results of bench_tp_forward runs: stored per (dtype, rank count, threads per rank) as JSON
// (DIR/np<N>-t<T>-<dtype>.json), printed as one table per dtype with speedups over the
// single-rank single-thread run and the same model through transformers + torch (DIR/torch.json,
// written by bench/torch_tp_forward.py where torch imports), and the tp_forward: summary line.
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
  std::string dtype;        // "f32" or "bf16"
  int np = 0, threads = 0;  // ranks, kernel threads per rank
  int64_t prefill_tokens = 0, decode_steps = 0;
  double load_s = 0, prefill_s = 0, decode_s = 0;  // slowest rank; median over repeats
  std::vector<LinearRate> linear;                  // per rank
  // Yardsticks of the np 1 / 1 thread run (0 elsewhere): raw oneDNN on the Linear shapes, a
  // raw single-core read, and the weight bytes one decoded token reads.
  double onednn_gflops = 0, read_gbps = 0, decode_weight_bytes = 0;

  double total_s() const { return prefill_s + decode_s; }
  double prefill_rate() const { return double(prefill_tokens) / prefill_s; }
  double decode_rate() const { return decode_s > 0 ? double(decode_steps) / decode_s : 0.0; }
  double linear_gflops_sum() const;
};

// transformers + torch on the same model and ids (bench/torch_tp_forward.py).
struct TorchRun {
  std::string dtype;
  int threads = 0;
  double prefill_rate = 0, decode_rate = 0;  // tokens/s, medians
};

void save_result(const std::string& dir, const RunResult& result);
// Every np<N>-t<T>-<dtype>.json in dir.
std::vector<RunResult> load_results(const std::string& dir);
// DIR/torch.json, or nothing when torch was not importable.
std::vector<TorchRun> load_torch(const std::string& dir);

void print_table(const std::vector<RunResult>& series, const std::vector<TorchRun>& torch);
// "tp_forward: speedup_np2=X ... decode_bw_fraction=X"; ValueError without the f32 np 1 / 1
// thread and np 2 runs. Ratios against torch read "n/a" without torch.json.
void print_summary(const std::vector<RunResult>& series, const std::vector<TorchRun>& torch);

}  // namespace tp_forward_bench
