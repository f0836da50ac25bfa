// `make bench-train`: tensor-parallel training steps of a Llama checkpoint (f32, AdamW).
//
//   DTENSOR_NUM_THREADS=1 scripts/mpirun.sh -np 1 build/bench/bench_train --model build/bench-train-model
//       --results DIR [--checkpoint-activations]        (one line)
//   scripts/mpirun.sh -np 4 build/bench/bench_train --model build/bench-train-model --results DIR --summary
//
// Each run loads the model sharded over all ranks (the auto plan) and runs --warmup untimed then
// --repeats timed steps of examples/training.hpp (--batch rows of --seq tokens, fixed pseudo-random
// ids, AdamW after clip_grad_norm_), reporting the median over repeats of the slowest rank's
// forward (through the loss), backward and optimizer seconds. Linear GFLOP/s in backward: the
// backward of a Linear costs twice its forward's matmul flops (input and weight gradients), so
// it is 2 x the forward's Linear flops (nn::ScopedLinearProfile, summed over ranks) / the whole
// backward's seconds, a lower bound on the backward GEMMs' rate. Peak RSS is each rank's
// getrusage maximum, loading included; a run with --checkpoint-activations is its own process.
// Rank 0 stores DIR/np<N>[-ckpt].json and prints the table of every run in DIR so far beside
// transformers + torch (DIR/torch.json from bench/torch_train.py); --summary adds the last line
//   train: speedup_np2=X bwd_fwd_ratio=X step_vs_torch=X ckpt_memory_ratio=X
// (np 2 over np 1 tokens/s; np 1's backward / forward; torch's 1-thread step over our np 1 step;
// np 1's peak RSS with / without checkpointing).
#include "training.hpp"

#include "collectives/runtime.hpp"
#include "mesh/device_mesh.hpp"
#include "models/hf_config.hpp"
#include "nn/linear_profile.hpp"
#include "tensor/cpu/host_cpu.hpp"
#include "tensor/cpu/threads.hpp"
#include "tools/parse_on_every_rank.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/resource.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

using namespace dtensor;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string model_dir;
  std::string results_dir;
  int64_t batch = 8;
  int64_t seq = 256;
  int repeats = 3;
  int warmup = 1;
  bool checkpoint_activations = false;
  bool summary = false;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Every rank's value, on every rank.
std::vector<double> gather(Communicator& world, double mine) {
  Tensor in = Tensor::full({1}, mine, DType::F64);
  Tensor all = Tensor::empty({int64_t(world.size())}, DType::F64);
  world.all_gather(in, all);
  return all.to_vector<double>();
}

double slowest(Communicator& world, double seconds) {
  const std::vector<double> all = gather(world, seconds);
  return *std::max_element(all.begin(), all.end());
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

Tensor bench_tokens(int64_t rows, int64_t columns, int64_t vocab) {
  std::vector<int64_t> ids(size_t(rows * columns));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t((i * 7919 + 13 * (i / size_t(columns)) + 5) % size_t(vocab));
  return Tensor::from_vector(ids, {rows, columns});
}

nlohmann::json run(Communicator& world, const Options& o) {
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
  const models::HFConfig config = models::load_hf_config(o.model_dir);
  auto model = models::load_sharded(o.model_dir, mesh, models::auto_tp_plan(config), DType::F32);
  training::Trainer trainer(model,
                            {.lr = 1e-4, .clip_grad_norm = 1.0, .checkpoint_activations = o.checkpoint_activations});
  const Tensor tokens = bench_tokens(o.batch * (o.warmup + o.repeats), o.seq + 1, config.vocab_size);
  std::vector<double> forward, backward, optimizer, step, linear_flops;
  for (int r = 0; r < o.warmup + o.repeats; ++r) {
    world.barrier();
    nn::ScopedLinearProfile profile;
    const training::StepResult s = trainer.step(r, tokens, o.batch);
    const double flops = profile.stats().flops;  // forward Linears (and their recompute when checkpointing)
    if (r < o.warmup) continue;
    forward.push_back(slowest(world, s.forward_seconds));
    backward.push_back(slowest(world, s.backward_seconds));
    optimizer.push_back(slowest(world, s.optimizer_seconds));
    step.push_back(slowest(world, s.forward_seconds + s.backward_seconds + s.optimizer_seconds));
    const std::vector<double> all = gather(world, flops);
    linear_flops.push_back(std::accumulate(all.begin(), all.end(), 0.0));
  }
  nlohmann::json result;
  result["np"] = world.size();
  result["threads"] = cpu::kernel_threads();
  result["checkpointing"] = o.checkpoint_activations;
  result["tokens"] = o.batch * o.seq;
  result["forward_s"] = median(forward);
  result["backward_s"] = median(backward);
  result["optimizer_s"] = median(optimizer);
  result["step_s"] = median(step);
  // With checkpointing the profile also counts the recompute, which is not a forward's flops.
  const double forward_linear_flops = median(linear_flops) / (o.checkpoint_activations ? 2.0 : 1.0);
  result["bwd_linear_gflops"] = 2 * forward_linear_flops / median(backward) / 1e9;
  result["peak_rss_mib"] = gather(world, peak_rss_mib());
  return result;
}

std::string run_name(const nlohmann::json& r) {
  return fmt::format("np{}{}", r["np"].get<int>(), r["checkpointing"].get<bool>() ? "-ckpt" : "");
}

std::vector<nlohmann::json> load_results(const std::string& dir) {
  std::vector<nlohmann::json> runs;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json" || entry.path().stem() == "torch") continue;
    std::ifstream in(entry.path());
    runs.push_back(nlohmann::json::parse(in));
  }
  std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) { return run_name(a) < run_name(b); });
  return runs;
}

std::optional<nlohmann::json> find_run(const std::vector<nlohmann::json>& runs, const std::string& name) {
  for (const auto& r : runs) {
    if (run_name(r) == name) return r;
  }
  return std::nullopt;
}

double max_rss(const nlohmann::json& r) {
  const auto rss = r["peak_rss_mib"].get<std::vector<double>>();
  return *std::max_element(rss.begin(), rss.end());
}

void print_table(const std::vector<nlohmann::json>& runs, const std::optional<nlohmann::json>& torch, int cores) {
  fmt::print("{:<10} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>13}  {}\n", "run", "threads", "tokens/s", "step s",
             "fwd s", "bwd s", "optim s", "bwd/fwd", "bwd Lin GF/s", "peak RSS MiB per rank");
  for (const auto& r : runs) {
    const int np = r["np"].get<int>();
    const std::string note = np * r["threads"].get<int>() > cores ? " (oversubscribed)" : "";
    fmt::print("{:<10} {:>7} {:>10.1f} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>8.2f} {:>13.1f}  {:.0f}{}\n", run_name(r),
               r["threads"].get<int>(), r["tokens"].get<double>() / r["step_s"].get<double>(),
               r["step_s"].get<double>(), r["forward_s"].get<double>(), r["backward_s"].get<double>(),
               r["optimizer_s"].get<double>(), r["backward_s"].get<double>() / r["forward_s"].get<double>(),
               r["bwd_linear_gflops"].get<double>(), fmt::join(r["peak_rss_mib"].get<std::vector<double>>(), " / "),
               note);
  }
  if (torch) {
    const double step_s = (*torch)["step_s"].get<double>();
    fmt::print("{:<10} {:>7} {:>10.1f} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>8.2f} {:>13}  {:.0f}\n", "torch", 1,
               (*torch)["tokens"].get<double>() / step_s, step_s, (*torch)["forward_s"].get<double>(),
               (*torch)["backward_s"].get<double>(), (*torch)["optimizer_s"].get<double>(),
               (*torch)["backward_s"].get<double>() / (*torch)["forward_s"].get<double>(), "-",
               (*torch)["peak_rss_mib"].get<double>());
  }
}

std::string ratio(const std::optional<double>& value) { return value ? fmt::format("{:.2f}", *value) : "n/a"; }

void print_summary(const std::vector<nlohmann::json>& runs, const std::optional<nlohmann::json>& torch) {
  const auto np1 = find_run(runs, "np1"), np2 = find_run(runs, "np2"), ckpt = find_run(runs, "np1-ckpt");
  auto tokens_per_s = [](const nlohmann::json& r) { return r["tokens"].get<double>() / r["step_s"].get<double>(); };
  std::optional<double> speedup, bwd_fwd, vs_torch, memory;
  if (np1 && np2) speedup = tokens_per_s(*np2) / tokens_per_s(*np1);
  if (np1) bwd_fwd = (*np1)["backward_s"].get<double>() / (*np1)["forward_s"].get<double>();
  if (np1 && torch) vs_torch = (*torch)["step_s"].get<double>() / (*np1)["step_s"].get<double>();
  if (np1 && ckpt) memory = max_rss(*ckpt) / max_rss(*np1);
  fmt::print("train: speedup_np2={} bwd_fwd_ratio={} step_vs_torch={} ckpt_memory_ratio={}\n", ratio(speedup),
             ratio(bwd_fwd), ratio(vs_torch), ratio(memory));
}

void add_options(CLI::App& app, Options& o) {
  app.add_option("--model", o.model_dir, "Llama checkpoint directory")->required();
  app.add_option("--results", o.results_dir, "directory of the np<N>.json results of this series")->required();
  app.add_option("--batch", o.batch, "rows per step")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--seq", o.seq, "tokens per row")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  app.add_option("--repeats", o.repeats, "timed steps (the median is reported)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed steps first")->check(CLI::Range(0, 100))->capture_default_str();
  app.add_flag("--checkpoint-activations", o.checkpoint_activations, "recompute each decoder layer in backward");
  app.add_flag("--summary", o.summary, "end with the train: summary line");
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Tensor-parallel training steps of a Llama checkpoint (mpirun -np N)."};
    Options o;
    add_options(app, o);
    if (auto code = tools::parse_on_every_rank(app, argc, argv, world)) return *code;
    const nlohmann::json result = run(world, o);
    if (world.rank() != 0) return 0;
    fs::create_directories(o.results_dir);
    std::ofstream(fs::path(o.results_dir) / (run_name(result) + ".json")) << result.dump(1);
    std::optional<nlohmann::json> torch;
    if (std::ifstream in(fs::path(o.results_dir) / "torch.json"); in) torch = nlohmann::json::parse(in);
    const int cores = int(std::thread::hardware_concurrency());
    fmt::print("host: {}; {} core(s); batch {} x {} tokens, f32, AdamW + clip_grad_norm\n", cpu::host_cpu_model(),
               cores, o.batch, o.seq);
    print_table(load_results(o.results_dir), torch, cores);
    if (o.summary) print_summary(load_results(o.results_dir), torch);
    return 0;
  });
}
