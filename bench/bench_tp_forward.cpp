// `make bench-tp-forward`: tensor-parallel prefill and decode of a Llama checkpoint.
//
//   scripts/mpirun.sh -np 1 build/bench/bench_tp_forward --model build/bench-model --results DIR
//   scripts/mpirun.sh -np 2 build/bench/bench_tp_forward --model build/bench-model --results DIR
//   scripts/mpirun.sh -np 4 build/bench/bench_tp_forward --model build/bench-model --results DIR --summary
//
// Each run loads the model sharded over all ranks (the auto plan), then per repeat: a prefill of
// --prefill tokens and --decode greedy single-token steps on the KV cache. --warmup untimed
// repeats come first. Times are the slowest rank's; the median over repeats is reported. Linear
// GFLOP/s is nn::ScopedLinearProfile over the timed prefills: each rank's local matmul flops /
// seconds, and the sum over ranks (np 4 oversubscribes the 2 cores: its per-rank rates include
// time the rank waited for a core). The single-rank run also times raw Eigen GEMM (x @ W^T,
// row-major, one process, one weight per shape reused) on one prefill's Linear shapes as the
// kernel's reference.
//
// Rank 0 stores its run as DIR/np<N>.json and prints the table of every run in DIR so far, with
// speedups over np 1 (the single-process baseline). speedup = (prefill + decode seconds at np 1)
// / (the same at np N), i.e. the whole workload's wall time; the prefill and decode speedups
// are printed separately. With --summary the last line is
//   tp_forward: speedup_np2=X linear_gflops_np1=X prefill_speedup_np2=X decode_speedup_np2=X speedup_np4=X
//
// Generic tuning, as tensor/linalg.cpp has (GCC 12's znver3 tuning slows Eigen's GEBP by ~30%
// here), so the raw Eigen reference row measures the same kernel code the Linear layers run.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("tune=generic")
#endif
#include "bench_tp_forward_report.hpp"

#include "collectives/runtime.hpp"
#include "mesh/device_mesh.hpp"
#include "models/causal_lm.hpp"
#include "nn/linear_profile.hpp"
#include "tensor/ops.hpp"
#include "tools/parse_on_every_rank.hpp"

#include <CLI/CLI.hpp>
#include <Eigen/Dense>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

using namespace dtensor;
using namespace tp_forward_bench;

namespace {

struct Options {
  std::string model_dir;
  std::string results_dir;
  int64_t prefill = 512;
  int64_t decode = 64;
  int repeats = 5;
  int warmup = 1;
  bool summary = false;
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The slowest rank's value.
double slowest(Communicator& world, double seconds) {
  Tensor t = Tensor::full({1}, seconds, DType::F64);
  world.all_reduce(t, ReduceOp::Max);
  return t.item<double>();
}

std::vector<int64_t> prompt_ids(int64_t length, int64_t vocab) {
  std::vector<int64_t> ids(size_t(length), 0);
  for (int64_t i = 0; i < length; ++i) ids[size_t(i)] = (i * 7919 + 13) % vocab;
  return ids;
}

int64_t greedy_id(const Tensor& logits) { return argmax(logits.select(0, logits.size(0) - 1), 0).item<int64_t>(); }

struct Repeat {
  double prefill_s = 0, decode_s = 0;
};

// One prefill under the Linear profile, then the decode steps; the slowest rank's times.
Repeat run_once(Communicator& world, models::CausalLM& model, const Options& o, nn::LinearStats& linear) {
  const std::vector<int64_t> prompt = prompt_ids(o.prefill, model.config().vocab_size);
  model.reset_cache();
  model.reserve_cache(o.prefill + o.decode + 1);
  world.barrier();
  double start = now_seconds();
  int64_t next = 0;
  {
    nn::ScopedLinearProfile profile;
    next = greedy_id(model.forward_tokens(prompt));
    linear.flops += profile.stats().flops;
    linear.seconds += profile.stats().seconds;
    linear.calls += profile.stats().calls;
  }
  Repeat r;
  r.prefill_s = now_seconds() - start;
  start = now_seconds();
  for (int64_t step = 0; step < o.decode; ++step) next = greedy_id(model.forward_tokens({next}));
  r.decode_s = now_seconds() - start;
  return {slowest(world, r.prefill_s), slowest(world, r.decode_s)};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Every rank's (flops, seconds) of its Linear layers, on every rank.
std::vector<LinearRate> gather_linear(Communicator& world, const nn::LinearStats& mine) {
  Tensor in = Tensor::from_vector<double>({mine.flops, mine.seconds}, {2});
  Tensor all = Tensor::empty({2 * int64_t(world.size())}, DType::F64);
  world.all_gather(in, all);
  const std::vector<double> v = all.to_vector<double>();
  std::vector<LinearRate> rates;
  for (size_t r = 0; r < size_t(world.size()); ++r) rates.push_back({v[2 * r], v[2 * r + 1]});
  return rates;
}

// One prefill's Linear products [m, in] @ [out, in]^T: per layer q, k, v, o, gate, up, down, then lm_head.
struct GemmShape {
  int64_t out, in, count;
};
std::vector<GemmShape> prefill_gemms(const nn::HFConfig& c) {
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const int64_t layers = c.num_hidden_layers, h = c.hidden_size, i = c.intermediate_size;
  return {{q, h, layers}, {kv, h, 2 * layers}, {h, q, layers}, {i, h, 2 * layers}, {h, i, layers}, {c.vocab_size, h, 1}};
}

// Raw Eigen GEMM over one prefill's Linear shapes (one weight per shape, reused): GFLOP/s.
double eigen_reference_gflops(const nn::HFConfig& config, int64_t m) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  double flops = 0, seconds = 0;
  for (const GemmShape& s : prefill_gemms(config)) {
    const RowMajor x = RowMajor::Random(m, s.in), w = RowMajor::Random(s.out, s.in);
    RowMajor y(m, s.out);
    for (int64_t k = 0; k < s.count; ++k) {
      const double start = now_seconds();
      y.noalias() = x * w.transpose();
      seconds += now_seconds() - start;
      flops += 2.0 * double(m) * double(s.in) * double(s.out);
    }
  }
  return flops / seconds / 1e9;
}

RunResult run(Communicator& world, const Options& o) {
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
  const nn::HFConfig config = nn::load_hf_config(o.model_dir);
  double start = now_seconds();
  auto model = models::load_sharded(o.model_dir, mesh, models::auto_tp_plan(config), DType::F32);
  RunResult result;
  result.np = world.size();
  result.load_s = slowest(world, now_seconds() - start);
  result.prefill_tokens = o.prefill;
  result.decode_steps = o.decode;
  std::vector<double> prefill, decode;
  nn::LinearStats linear, warmup_linear;
  for (int r = 0; r < o.warmup; ++r) run_once(world, *model, o, warmup_linear);
  for (int r = 0; r < o.repeats; ++r) {
    const Repeat rep = run_once(world, *model, o, linear);
    prefill.push_back(rep.prefill_s);
    decode.push_back(rep.decode_s);
  }
  result.prefill_s = median(prefill);
  result.decode_s = median(decode);
  result.linear = gather_linear(world, linear);
  model.reset();
  if (world.size() == 1) result.eigen_gflops = eigen_reference_gflops(config, o.prefill);
  return result;
}

void add_options(CLI::App& app, Options& o) {
  app.add_option("--model", o.model_dir, "Llama checkpoint directory")->required();
  app.add_option("--results", o.results_dir, "directory of the np<N>.json results of this series")->required();
  app.add_option("--prefill", o.prefill, "prompt tokens")->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--decode", o.decode, "greedy decode steps")->check(CLI::Range(int64_t(0), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--repeats", o.repeats, "repeats (the median is reported)")->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed repeats first (first touch of buffers and caches)")
      ->check(CLI::Range(0, 100))->capture_default_str();
  app.add_flag("--summary", o.summary, "end with the tp_forward: summary line (needs np1 and np2 results)");
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Tensor-parallel prefill and decode throughput of a Llama checkpoint (mpirun -np N)."};
    Options options;
    add_options(app, options);
    if (auto code = tools::parse_on_every_rank(app, argc, argv, world)) return *code;
    const RunResult result = run(world, options);
    if (world.rank() != 0) return 0;
    save_result(options.results_dir, result);
    const std::vector<RunResult> series = load_results(options.results_dir);
    print_table(series);
    if (options.summary) print_summary(series);
    return 0;
  });
}
