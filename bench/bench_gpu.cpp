// GPU benchmark: NCCL all_reduce through our backend against the raw NCCL call, our cuBLASLt
// linear against torch.nn.functional.linear, and the prefill of a Llama checkpoint against the
// same model in torch eager, all on the same GPU (bench/torch_linear.py and
// bench/torch_prefill.py write the torch timings as JSON; `make bench-gpu` runs all three).
// Prints tables of medians and ends with
//   gpu: nccl_ratio=X linear_vs_torch=X prefill_vs_torch=X
// nccl and linear ratios = geometric mean over sizes of (reference time / our time), the prefill
// ratio torch's median over ours: 1.0 is parity, higher is faster than the reference.
#include "collectives/mpi/mpi_backend.hpp"
#include "collectives/nccl.hpp"
#include "collectives/nccl/nccl_backend.hpp"
#include "collectives/runtime.hpp"
#include "models/causal_lm.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <utility>
#include <vector>

using namespace dtensor;

namespace {

// Seconds per call of `iters` back-to-back calls, queued on one stream and waited for once (as
// NCCL and torch users run them).
template <typename Call>
double seconds_per_call(int device, int iters, const Call& call) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) call();
  cuda::synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
}

double median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// Median over `repeats` of seconds_per_call (templates, so the harness adds no indirect call).
template <typename Call>
double median_seconds(int device, int repeats, int iters, const Call& call) {
  for (int i = 0; i < 3; ++i) call();  // warm-up: plans, caches, NCCL connections
  cuda::synchronize(device);
  std::vector<double> samples;
  for (int r = 0; r < repeats; ++r) samples.push_back(seconds_per_call(device, iters, call));
  return median(samples);
}

// Two ways of doing the same thing timed in alternation (a b, b a, a b, ...), so that clock and
// queue drift during the run falls on both alike. Returns their medians.
template <typename A, typename B>
std::pair<double, double> paired_medians(int device, int repeats, int iters, const A& a, const B& b) {
  for (int i = 0; i < 3; ++i) a(), b();  // warm-up: plans, caches, NCCL connections
  cuda::synchronize(device);
  std::vector<double> a_samples, b_samples;
  for (int r = 0; r < repeats; ++r) {
    if (r % 2 == 0) {
      a_samples.push_back(seconds_per_call(device, iters, a));
      b_samples.push_back(seconds_per_call(device, iters, b));
    } else {
      b_samples.push_back(seconds_per_call(device, iters, b));
      a_samples.push_back(seconds_per_call(device, iters, a));
    }
  }
  return {median(a_samples), median(b_samples)};
}

double geometric_mean(const std::vector<double>& values) {
  double log_sum = 0;
  for (double v : values) log_sum += std::log(v);
  return values.empty() ? 0.0 : std::exp(log_sum / double(values.size()));
}

void nccl_ok(ncclResult_t status, const char* call) {
  if (status != ncclSuccess) fail<CommError>(call, "{}", ncclGetErrorString(status));
}

// all_reduce (sum, f32, out of place) through our NCCL backend and through ncclAllReduce on a
// communicator of its own, timed in alternation per size. The backend is called directly: a
// Communicator over one rank never communicates (its all_reduce is a local copy), so on a one-GPU
// machine this is the only way our NCCL path runs at all. On more ranks Communicator adds its
// argument checks and counters (a few tens of nanoseconds) on top.
double bench_nccl(Communicator& world, int repeats) {
  const Device device = nccl_device();
  auto ours = detail::create_nccl_backend(detail::create_mpi_world(nullptr, nullptr), device.index);
  ncclUniqueId id{};
  if (world.rank() == 0) nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
  Tensor id_bytes = Tensor::from_blob(&id, {int64_t(sizeof(id))}, DType::U8);
  world.broadcast(id_bytes, 0);
  ncclComm_t raw = nullptr;
  nccl_ok(ncclCommInitRank(&raw, world.size(), id, world.rank()), "ncclCommInitRank");
  cudaStream_t stream = cuda::current_stream(device.index);

  if (world.rank() == 0) {
    fmt::print("# all_reduce sum f32 on {} rank(s), NCCL through dtensor's backend vs raw ncclAllReduce\n",
               world.size());
    fmt::print("{:>12} {:>12} {:>12} {:>10} {:>10} {:>8}\n", "size(B)", "raw(us)", "ours(us)", "algbw", "busbw",
               "ratio");
  }
  std::vector<double> ratios;
  for (int64_t bytes :
       {int64_t(1) << 12, int64_t(1) << 16, int64_t(1) << 20, int64_t(1) << 24, int64_t(1) << 26, int64_t(1) << 28}) {
    const int64_t n = bytes / 4;
    Tensor in = Tensor::full({n}, 1.0, DType::F32, device);
    Tensor out = Tensor::empty({n}, DType::F32, device);
    const int iters = bytes >= (int64_t(1) << 26) ? 20 : 200;
    const auto [raw_s, ours_s] = paired_medians(
        device.index, repeats, iters,
        [&] {
          nccl_ok(ncclAllReduce(in.data_ptr(), out.data_ptr(), size_t(n), ncclFloat32, ncclSum, raw, stream),
                  "ncclAllReduce");
        },
        [&] { ours->all_reduce(in, out, ReduceOp::Sum, false); });
    ratios.push_back(raw_s / ours_s);
    const double algbw = double(bytes) / ours_s / 1e9;
    const double busbw = algbw * 2.0 * (world.size() - 1) / world.size();
    if (world.rank() == 0) {
      fmt::print("{:>12} {:>12.2f} {:>12.2f} {:>10.2f} {:>10.2f} {:>8.3f}\n", bytes, raw_s * 1e6, ours_s * 1e6, algbw,
                 busbw, raw_s / ours_s);
    }
  }
  ncclCommDestroy(raw);
  return geometric_mean(ratios);
}

struct LinearShape {
  int64_t tokens, in, out;
};

// Our linear (bf16, with bias) against torch's timings for the same shapes, read from JSON:
// [{"tokens":..,"in":..,"out":..,"seconds":..}, ...]. Returns 0 when there are none.
double bench_linear(const std::string& torch_json, int repeats) {
  const Device device = nccl_device();
  std::vector<nlohmann::json> torch_rows;
  if (!torch_json.empty()) {
    std::ifstream file(torch_json);
    if (file) torch_rows = nlohmann::json::parse(file).get<std::vector<nlohmann::json>>();
  }
  const std::vector<LinearShape> shapes = {
      {1, 4096, 4096}, {128, 4096, 4096}, {2048, 4096, 4096}, {2048, 4096, 14336}, {2048, 14336, 4096}};
  fmt::print("\n# linear bf16 x[tokens, in] @ W[out, in]^T + b: dtensor (cuBLASLt) vs torch.nn.functional.linear\n");
  fmt::print("{:>8} {:>7} {:>7} {:>12} {:>10} {:>12} {:>8}\n", "tokens", "in", "out", "ours(us)", "TFLOP/s",
             "torch(us)", "ratio");
  std::vector<double> ratios;
  for (const LinearShape& s : shapes) {
    RandomOptions opts{1, Distribution::Uniform, -1, 1};
    Tensor x = random({s.tokens, s.in}, DType::BF16, opts).to(device);
    Tensor w = random({s.out, s.in}, DType::BF16, opts).to(device);
    Tensor b = random({s.out}, DType::BF16, opts).to(device);
    const int iters = s.tokens * s.in * s.out > (int64_t(1) << 32) ? 20 : 200;
    const double ours_s = median_seconds(device.index, repeats, iters, [&] { (void)linear(x, w, b); });
    const double tflops = 2.0 * double(s.tokens) * double(s.in) * double(s.out) / ours_s / 1e12;
    double torch_s = 0;
    for (const auto& row : torch_rows) {
      if (row.at("tokens") == s.tokens && row.at("in") == s.in && row.at("out") == s.out) torch_s = row.at("seconds");
    }
    if (torch_s > 0) ratios.push_back(torch_s / ours_s);
    fmt::print("{:>8} {:>7} {:>7} {:>12.2f} {:>10.1f} {:>12} {:>8}\n", s.tokens, s.in, s.out, ours_s * 1e6, tflops,
               torch_s > 0 ? fmt::format("{:.2f}", torch_s * 1e6) : "n/a",
               torch_s > 0 ? fmt::format("{:.3f}", torch_s / ours_s) : "n/a");
  }
  return geometric_mean(ratios);
}

// The prompt bench/torch_prefill.py runs too.
std::vector<int64_t> prefill_ids(int64_t tokens, int64_t vocab) {
  std::vector<int64_t> ids(size_t(tokens), 0);
  for (int64_t i = 0; i < tokens; ++i) ids[size_t(i)] = (1 + 7 * i) % vocab;
  return ids;
}

// The prefill of `tokens` tokens of the checkpoint in `dir`, loaded unsharded in `dtype` and moved
// to the GPU, against torch's median from JSON ({"seconds": .., "tokens": .., "last_logits": [..]}).
// Each sample resets the KV cache, runs forward_tokens and waits for the GPU. Returns torch's
// time over ours, 0 when either side is missing.
double bench_prefill(const std::string& dir, const std::string& torch_json, int64_t tokens, DType dtype, int repeats) {
  if (dir.empty()) return 0;
  const Device device = nccl_device();
  auto model = models::load_unsharded(dir, dtype);
  model->to(device);
  const std::vector<int64_t> ids = prefill_ids(tokens, model->config().vocab_size);
  model->reserve_cache(tokens);
  Tensor logits;
  auto prefill = [&] {
    model->reset_cache();
    logits = model->forward_tokens(ids);
  };
  const double ours_s = median_seconds(device.index, repeats, 1, prefill);
  double torch_s = 0, logits_diff = -1;
  std::ifstream file(torch_json);
  if (!torch_json.empty() && file) {
    const nlohmann::json torch = nlohmann::json::parse(file);
    if (torch.at("tokens") == tokens) torch_s = torch.at("seconds");
    const auto last = torch.at("last_logits").get<std::vector<float>>();
    const Tensor mine = logits.select(0, tokens - 1).to(Device::cpu());
    if (int64_t(last.size()) == mine.numel()) {
      logits_diff = max_abs_diff(mine, Tensor::from_vector(last, {int64_t(last.size())}));
    }
  }
  const models::HFConfig& c = model->config();
  fmt::print("\n# Llama prefill of {} tokens, {} ({} layers, hidden {}, {} heads / {} KV heads, vocab {}) on one GPU\n",
             tokens, dtype, c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads,
             c.vocab_size);
  fmt::print("{:>8} {:>10} {:>12} {:>10} {:>8} {:>16}\n", "tokens", "ours(ms)", "tokens/s", "torch(ms)", "ratio",
             "max|dlogit|");
  fmt::print("{:>8} {:>10.3f} {:>12.0f} {:>10} {:>8} {:>16}\n", tokens, ours_s * 1e3, double(tokens) / ours_s,
             torch_s > 0 ? fmt::format("{:.3f}", torch_s * 1e3) : "n/a",
             torch_s > 0 ? fmt::format("{:.3f}", torch_s / ours_s) : "n/a",
             logits_diff >= 0 ? fmt::format("{:.3g}", logits_diff) : "n/a");
  return torch_s > 0 ? torch_s / ours_s : 0;
}

std::string ratio_text(double ratio) { return ratio > 0 ? fmt::format("{:.3f}", ratio) : "n/a"; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"NCCL and cuBLAS through dtensor vs raw NCCL and torch"};
  std::string torch_json, model_dir, torch_prefill_json, dtype_name = "bf16";
  int64_t prefill_tokens = 512;
  int repeats = 15;
  app.add_option("--torch-linear", torch_json, "JSON timings written by bench/torch_linear.py");
  app.add_option("--model", model_dir, "Llama checkpoint directory for the prefill (none: prefill n/a)");
  app.add_option("--torch-prefill", torch_prefill_json, "JSON written by bench/torch_prefill.py for --model");
  app.add_option("--prefill-tokens", prefill_tokens, "prompt length of the prefill")->check(CLI::PositiveNumber);
  app.add_option("--dtype", dtype_name, "model dtype for the prefill")->check(CLI::IsMember({"bf16", "f32"}));
  app.add_option("--repeats", repeats, "timed repeats per case (median reported)");
  CLI11_PARSE(app, argc, argv);
  if (cuda::device_count() == 0) {
    std::printf(
        "no CUDA device visible: nothing to measure\ngpu: nccl_ratio=n/a linear_vs_torch=n/a prefill_vs_torch=n/a\n");
    return 0;
  }
  return run_main(argc, argv, [&](Communicator& world) {
    const double nccl_ratio = bench_nccl(world, repeats);
    if (world.rank() != 0) return 0;
    const double linear_ratio = bench_linear(torch_json, repeats);
    const DType dtype = dtype_name == "bf16" ? DType::BF16 : DType::F32;
    const double prefill_ratio = bench_prefill(model_dir, torch_prefill_json, prefill_tokens, dtype, repeats);
    fmt::print("gpu: nccl_ratio={:.3f} linear_vs_torch={} prefill_vs_torch={}\n", nccl_ratio, ratio_text(linear_ratio),
               ratio_text(prefill_ratio));
    return 0;
  });
}
