// GPU benchmark: NCCL all_reduce through our backend against the raw NCCL call, and our cuBLASLt
// linear against torch.nn.functional.linear on the same GPU (bench/torch_linear.py writes the
// torch timings as JSON; `make bench-gpu` runs both). Prints tables of medians and ends with
//   gpu: nccl_ratio=X linear_vs_torch=X prefill_vs_torch=n/a
// ratios = geometric mean over sizes of (reference time / our time): 1.0 is parity, higher is
// faster than the reference. prefill_vs_torch needs the Llama model, which does not exist yet.
#include "collectives/mpi_backend.hpp"
#include "collectives/nccl.hpp"
#include "collectives/nccl_backend.hpp"
#include "collectives/runtime.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <CLI/CLI.hpp>
#include <cuda_runtime_api.h>
#include <nccl.h>
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
  for (int64_t bytes : {int64_t(1) << 12, int64_t(1) << 16, int64_t(1) << 20, int64_t(1) << 24, int64_t(1) << 26,
                        int64_t(1) << 28}) {
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
  const std::vector<LinearShape> shapes = {{1, 4096, 4096}, {128, 4096, 4096}, {2048, 4096, 4096},
                                           {2048, 4096, 14336}, {2048, 14336, 4096}};
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"NCCL and cuBLAS through dtensor vs raw NCCL and torch"};
  std::string torch_json;
  int repeats = 15;
  app.add_option("--torch-linear", torch_json, "JSON timings written by bench/torch_linear.py");
  app.add_option("--repeats", repeats, "timed repeats per case (median reported)");
  CLI11_PARSE(app, argc, argv);
  if (cuda::device_count() == 0) {
    std::printf("no CUDA device visible: nothing to measure\ngpu: nccl_ratio=n/a linear_vs_torch=n/a prefill_vs_torch=n/a\n");
    return 0;
  }
  return run_main(argc, argv, [&](Communicator& world) {
    const double nccl_ratio = bench_nccl(world, repeats);
    double linear_ratio = 0;
    if (world.rank() == 0) linear_ratio = bench_linear(torch_json, repeats);
    if (world.rank() == 0) {
      fmt::print("\n# prefill_vs_torch: n/a (needs the Llama model of the models issue, not built yet)\n");
      fmt::print("gpu: nccl_ratio={:.3f} linear_vs_torch={} prefill_vs_torch=n/a\n", nccl_ratio,
                 linear_ratio > 0 ? fmt::format("{:.3f}", linear_ratio) : "n/a");
    }
    return 0;
  });
}
