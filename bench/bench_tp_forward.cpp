// `make bench-tp-forward`: tensor-parallel prefill and decode of a Llama checkpoint, f32 and bf16.
//
//   DTENSOR_NUM_THREADS=1 scripts/mpirun.sh -np 1 build/bench/bench_tp_forward --model build/bench-model --results DIR
//   scripts/mpirun.sh -np 2 build/bench/bench_tp_forward --model build/bench-model --results DIR
//   scripts/mpirun.sh -np 4 build/bench/bench_tp_forward --model build/bench-model --results DIR --summary
//
// Each run loads the model sharded over all ranks (the auto plan) once per dtype of --dtypes
// (bf16: the f32 checkpoint rounded at load, weights and activations bf16 throughout), then per
// repeat: a prefill of --prefill tokens and --decode greedy single-token steps on the KV cache.
// --warmup untimed repeats come first. Times are the slowest rank's; the median over repeats is
// reported. Linear GFLOP/s is nn::ScopedLinearProfile over the timed prefills: each rank's local
// matmul flops / seconds, and the sum over ranks. Ranks use tensor/cpu/threads.hpp's kernel
// threads (one core each by default; DTENSOR_NUM_THREADS sets it).
//
// The single-rank single-thread run also measures the yardsticks (bench_tp_forward_reference.hpp):
// oneDNN's matmul called directly on one prefill's Linear shapes, and one core reading a decode
// step's weight bytes. Rank 0 stores its run as DIR/np<N>-t<T>-<dtype>.json and prints the table
// of every run in DIR so far beside transformers + torch (DIR/torch.json from
// bench/torch_tp_forward.py), and with --summary the tp_forward: line (bench_tp_forward_report.hpp).
#include "bench_tp_forward_reference.hpp"
#include "bench_tp_forward_report.hpp"

#include "collectives/runtime.hpp"
#include "mesh/device_mesh.hpp"
#include "models/causal_lm.hpp"
#include "nn/linear_profile.hpp"
#include "tensor/cpu/gemv.hpp"
#include "tensor/cpu/host_cpu.hpp"
#include "tensor/cpu/onednn_gemm.hpp"
#include "tensor/cpu/threads.hpp"
#include "tensor/ops.hpp"
#include "tools/parse_on_every_rank.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

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
  std::vector<std::string> dtypes = {"f32", "bf16"};
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

DType parse_dtype(const std::string& name) { return name == "bf16" ? DType::BF16 : DType::F32; }

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

// The kernels a Linear of the model runs on: oneDNN's implementation for the prefill's rows
// ("brg:avx512_core_bf16", ...), and for a decode step's single row, the matrix-vector kernel
// (tensor/cpu/gemv.hpp) where it takes the product.
std::string linear_kernels(const models::HFConfig& c, int64_t prefill, DType dtype) {
  const Tensor w = Tensor::empty({c.intermediate_size, c.hidden_size}, dtype);
  const Tensor x = Tensor::empty({prefill, c.hidden_size}, dtype);
  const Tensor y = Tensor::empty({prefill, c.intermediate_size}, dtype);
  const Tensor x1 = Tensor::empty({1, c.hidden_size}, dtype), y1 = Tensor::empty({1, c.intermediate_size}, dtype);
  const bool gemv = cpu::gemv(x1, w.transpose(0, 1), Tensor(), y1);
  return fmt::format("prefill oneDNN {}, decode {}", cpu::onednn_matmul_impl(x, w.transpose(0, 1), y),
                     gemv ? "dtensor matrix-vector kernel (AVX2)" : cpu::onednn_matmul_impl(x1, w.transpose(0, 1), y1));
}

void print_host(const models::HFConfig& config, const Options& o, int np) {
  fmt::print("host: {}; ISA: {}; oneDNN dispatches to {}; {} rank(s) x {} kernel thread(s)\n", cpu::host_cpu_model(),
             cpu::host_isa(), cpu::onednn_isa(), np, cpu::kernel_threads());
  for (const std::string& name : o.dtypes) {
    fmt::print("Linear kernels {}: {}\n", name, linear_kernels(config, o.prefill, parse_dtype(name)));
  }
}

RunResult run(Communicator& world, const Options& o, const std::string& dtype_name) {
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
  const models::HFConfig config = models::load_hf_config(o.model_dir);
  const DType dtype = parse_dtype(dtype_name);
  double start = now_seconds();
  auto model = models::load_sharded(o.model_dir, mesh, models::auto_tp_plan(config), dtype);
  RunResult result;
  result.dtype = dtype_name;
  result.np = world.size();
  result.threads = cpu::kernel_threads();
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
  if (world.size() == 1 && result.threads == 1) {
    result.onednn_gflops = onednn_linear_gflops(config, o.prefill, dtype);
    result.decode_weight_bytes = decode_weight_bytes(config, dtype);
    result.read_gbps = single_core_read_gbps(result.decode_weight_bytes);
  }
  return result;
}

void add_options(CLI::App& app, Options& o) {
  app.add_option("--model", o.model_dir, "Llama checkpoint directory")->required();
  app.add_option("--results", o.results_dir, "directory of the np<N>.json results of this series")->required();
  app.add_option("--prefill", o.prefill, "prompt tokens")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--decode", o.decode, "greedy decode steps")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--repeats", o.repeats, "repeats (the median is reported)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed repeats first (first touch of buffers and caches)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--dtypes", o.dtypes, "model dtypes, each run in turn")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("--summary", o.summary, "end with the tp_forward: summary line (needs the f32 np 1 and np 2 results)");
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Tensor-parallel prefill and decode throughput of a Llama checkpoint (mpirun -np N)."};
    Options options;
    add_options(app, options);
    if (auto code = tools::parse_on_every_rank(app, argc, argv, world)) return *code;
    if (world.rank() == 0) print_host(models::load_hf_config(options.model_dir), options, world.size());
    for (const std::string& dtype : options.dtypes) {
      const RunResult result = run(world, options, dtype);
      if (world.rank() == 0) save_result(options.results_dir, result);
    }
    if (world.rank() != 0) return 0;
    const std::vector<TorchRun> torch = load_torch(options.results_dir);
    const std::vector<RunResult> series = load_results(options.results_dir);
    print_table(series, torch);
    if (options.summary) print_summary(series, torch);
    return 0;
  });
}
