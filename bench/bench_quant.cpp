// `make bench-quant` (through bench/bench_quant.sh): one weight format of a model at one TP size.
//
//   scripts/mpirun.sh -np 2 build/bench/bench_quant --model SmolLM2.gguf --format q4_0 \
//       --reference f32-logits.npy                                          (one line)
//
// --format f32 | bf16 (the dtype of an unquantized model) or a --quantize name (models/quant.hpp).
// The model loads over every rank (the auto plan), then greedy generation runs --runs times on a
// prompt of --prompt-tokens ids (100, 101, ...) with --new-tokens new ones. Rank 0 prints one line
//   quant-row: np=N format=F weights_mib=X rss_mib=X hwm_mib=X prefill_tps=X decode_tps=X
//              decode_linear_share=X max_diff=X mean_diff=X                 (one line)
// weights_mib: the largest rank's weight bytes; rss_mib: the largest rank's VmRSS after loading,
// once the storage cache's freed blocks are released (as the quantized loaders do, so the f32
// model is not charged for its load's temporaries); hwm_mib: the largest peak VmHWM, loading
// included; tokens/s: medians over the runs; decode_linear_share: the share of a further decode's
// time in the Linears' local products (nn::ScopedLinearProfile), the rest being attention, norms,
// the embedding and communication; max_diff / mean_diff: the prompt logits' largest
// and mean absolute distance from --reference (an .npy of f32 logits; --dump writes this run's).
#include "collectives/runtime.hpp"
#include "io/npy.hpp"
#include "mesh/device_mesh.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "models/quant.hpp"
#include "nn/linear_profile.hpp"
#include "tensor/host_block_cache.hpp"
#include "tensor/ops.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <numeric>

using namespace dtensor;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

struct Flags {
  std::string model;
  std::string format = "f32";
  std::string reference;  // .npy of the f32 model's prompt logits
  std::string dump;       // write this run's prompt logits here
  int64_t runs = 3;
  int64_t prompt_tokens = 64;
  int64_t new_tokens = 32;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// The largest value over the ranks.
double largest(Communicator& world, double value) {
  Tensor t = Tensor::from_vector<double>({value}, {1});
  world.all_reduce(t, ReduceOp::Max);
  return t.item<double>();
}

// The share of single-token decode time spent in the Linears' local products (lm_head included;
// their communication not), from one more decode of `steps` tokens after the prompt.
double decode_linear_share(models::CausalLM& model, const std::vector<int64_t>& prompt, int64_t steps) {
  model.reset_cache();
  model.forward_tokens(prompt);
  nn::ScopedLinearProfile profile;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) model.forward_tokens({prompt[size_t(i) % prompt.size()]});
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  return profile.stats().seconds / seconds.count();
}

std::shared_ptr<models::CausalLM> load(const Flags& f, const DeviceMesh& mesh) {
  const models::HFConfig config = models::load_hf_config(f.model);
  const nn::TpPlan plan = models::auto_tp_plan(config);
  if (f.format == "f32" || f.format == "bf16") {
    auto model = models::load_sharded(f.model, mesh, plan, dtype_from_name(f.format));
    release_cached_host_blocks();
    return model;
  }
  return models::load_sharded_quantized(f.model, mesh, plan, DType::F32, f.format);
}

int run(Communicator& world, const Flags& f) {
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()});
  auto model = load(f, mesh);
  const models::ResidentMemory memory = models::resident_memory();
  const nn::LocalWeights weights = nn::local_weights(*model);
  std::vector<int64_t> prompt(size_t(f.prompt_tokens));
  std::iota(prompt.begin(), prompt.end(), int64_t(100));
  std::vector<double> prefill, decode;
  models::Generation g;
  for (int64_t run = 0; run < f.runs; ++run) {
    g = models::generate_greedy(*model, prompt, f.new_tokens);
    prefill.push_back(double(f.prompt_tokens) / g.prefill_seconds);
    decode.push_back(double(g.decode_steps) / g.decode_seconds);
  }
  const double linear_share = decode_linear_share(*model, prompt, f.new_tokens);
  const double rss = largest(world, double(memory.rss)), hwm = largest(world, double(memory.peak));
  const double held = largest(world, double(weights.bytes));
  if (world.rank() != 0) return 0;
  const Tensor logits = g.prompt_logits.to(DType::F32);
  if (!f.dump.empty()) io::write_npy(f.dump, logits);
  double max_diff = 0, mean_diff = 0;
  if (!f.reference.empty()) {
    const Tensor diff = abs(sub(logits, io::read_npy(f.reference)));
    max_diff = amax(diff).item<double>();
    mean_diff = mean(diff).item<double>();
  }
  fmt::print(
      "quant-row: np={} format={} weights_mib={:.1f} rss_mib={:.1f} hwm_mib={:.1f} prefill_tps={:.1f} "
      "decode_tps={:.1f} decode_linear_share={:.2f} max_diff={:.4g} mean_diff={:.4g}\n",
      world.size(), f.format, held / kMiB, rss / kMiB, hwm / kMiB, median(prefill), median(decode), linear_share,
      max_diff, mean_diff);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Memory and speed of one weight format (mpirun -np N); see bench/bench_quant.sh."};
    Flags f;
    app.add_option("--model", f.model, "checkpoint directory or .gguf file")->required();
    app.add_option("--format", f.format, "f32 | bf16 | " + models::quantize_names())->capture_default_str();
    app.add_option("--reference", f.reference, "f32 prompt logits (.npy) to measure the distance from");
    app.add_option("--dump", f.dump, "write the prompt logits (.npy, rank 0)");
    app.add_option("--runs", f.runs, "generations timed")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--prompt-tokens", f.prompt_tokens, "prompt length")->check(CLI::PositiveNumber);
    app.add_option("--new-tokens", f.new_tokens, "tokens generated")->check(CLI::Range(2, 1 << 20));
    CLI11_PARSE(app, argc, argv);
    if (f.format != "f32" && f.format != "bf16") models::check_quantize_name(f.format, "--format");
    return run(world, f);
  });
}
