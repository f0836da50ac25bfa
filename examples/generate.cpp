// `make demo`: greedy generation with a Llama / Mixtral checkpoint sharded over every rank.
//
//   scripts/mpirun.sh -np 4 build/examples/generate --model build/demo-model --check
//   scripts/mpirun.sh -np 2 build/examples/generate --model DIR --plan plan.json
//       --prompt-ids "1 15 29" --max-new-tokens 32 --dtype bf16 --dump-logits logits.npy --stream  (one line)
//
// The model is loaded over a 1-D tensor-parallel mesh of all ranks with the --plan file's
// strategies (default `--plan auto`: the model's built-in plan), then generates greedily. Rank 0 prints the
// generated ids and the prefill and decode tokens per second (--stream: also each id, a line
// "stream: ID", as soon as it is chosen). --dump-logits writes the f32 logits
// of every prompt position, [prompt length, vocab], as a NumPy .npy file (rank 0).
// --check also runs the unsharded model on rank 0 and prints
//   check: ids_match=yes|no max_abs_diff=X
// over the prompt logits; the exit code is 1 on every rank when the ids differ or the difference
// exceeds the bound: 1e-4 for f32; for bf16, 0.05 * max(1, largest |logit|) (bf16 keeps 8
// significant bits, and sharding changes the order of its rounded partial sums).
// --device cuda moves each rank's shards to its GPU after loading (through the CUDA backend library,
// libdtensor_cuda.so; DeviceError naming it and the reason where it cannot be loaded): ranks that share
// a GPU communicate through MPI with host staging; --check still runs the reference on the CPU.
// Bad flags or prompt ids outside the vocabulary are errors naming the value; an error on any
// rank ends the whole job with that rank's message.
#include "collectives/nccl.hpp"
#include "collectives/runtime.hpp"
#include "io/npy.hpp"
#include "mesh/device_mesh.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "nn/tp_plan.hpp"
#include "tensor/ops.hpp"
#include "tools/parse_on_every_rank.hpp"
#include "tools/share_verdict.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <sstream>

using namespace dtensor;

namespace {

constexpr const char* kOp = "generate";

struct Options {
  std::string model_dir;
  std::string plan_file = "auto";  // "auto": the model's built-in plan
  std::string prompt_ids = "1 2 3 4 5 6 7 8";
  int64_t max_new_tokens = 16;
  std::string dtype_flag = "f32";
  DType dtype = DType::F32;    // from dtype_flag
  std::string device = "cpu";  // or "cuda"
  std::string dump_logits;     // empty: none
  bool check = false;
  bool explain = false;
  bool stream = false;
};

void add_options(CLI::App& app, Options& o) {
  app.add_option("--model", o.model_dir, "checkpoint directory (config.json + safetensors)")->required();
  app.add_option("--plan", o.plan_file, "JSON tp_plan file {\"pattern\": \"strategy\"}, or auto (the model's own plan)")
      ->capture_default_str();
  app.add_option("--prompt-ids", o.prompt_ids, "prompt token ids, separated by spaces")->capture_default_str();
  app.add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--dtype", o.dtype_flag, "f32 | bf16 (weights and activations)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu | cuda (each rank's GPU: node-local rank modulo the GPUs)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--dump-logits", o.dump_logits, "write the prompt's f32 logits [prompt, vocab] to this .npy");
  app.add_flag("--check", o.check, "compare with the unsharded model on rank 0");
  app.add_flag("--explain", o.explain, "print how the plan placed every parameter");
  app.add_flag("--stream", o.stream, "print each generated id as soon as it is chosen (rank 0)");
}

// "1 2 3" -> {1, 2, 3}; each id must be in [0, vocab).
std::vector<int64_t> parse_prompt(const std::string& text, int64_t vocab) {
  std::istringstream in(text);
  std::vector<int64_t> ids;
  for (std::string word; in >> word;) {
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    check(used == word.size(), kOp, "--prompt-ids: '{}' is not an integer", word);
    check(id >= 0 && id < vocab, kOp, "--prompt-ids: id {} at position {} is outside the vocabulary [0, {})", id,
          ids.size(), vocab);
    ids.push_back(id);
  }
  check(!ids.empty(), kOp, "--prompt-ids: no ids in '{}'", text);
  return ids;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; }

// The largest difference --check accepts for this dtype (see the header).
double check_bound(DType dtype, const Tensor& reference_logits) {
  if (dtype == DType::F32) return 1e-4;
  return 0.05 * std::max(1.0, amax(abs(reference_logits)).item<double>());
}

void print_model(const Options& o, const models::HFConfig& config, int ranks, double load_seconds) {
  fmt::print(
      "model: {} ({}, {} layers, hidden {}, heads {}/{} kv, vocab {}{}), {} on {}, tp over {} rank(s), "
      "plan {}, loaded in {:.2f} s\n",
      o.model_dir, config.architecture, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
      config.num_key_value_heads, config.vocab_size,
      config.is_moe() ? fmt::format(", {} experts top-{}", config.num_local_experts, config.num_experts_per_tok) : "",
      dtype_name(o.dtype), o.device, ranks, o.plan_file, load_seconds);
}

// Decode steps are the single-token forwards after the prefill (the first new token comes from
// the prefill's logits).
void print_generation(const std::vector<int64_t>& prompt, const models::Generation& g) {
  const int64_t decoded = g.decode_steps;
  fmt::print("prompt ids ({}): {}\n", prompt.size(), fmt::join(prompt, " "));
  fmt::print("generated ids ({}): {}\n", g.new_ids.size(), fmt::join(g.new_ids, " "));
  fmt::print("prefill: {} tokens in {:.3f} s = {:.1f} tokens/s; decode: {} tokens in {:.3f} s = {:.1f} tokens/s\n",
             prompt.size(), g.prefill_seconds, per_second(double(prompt.size()), g.prefill_seconds), decoded,
             g.decode_seconds, per_second(double(decoded), g.decode_seconds));
}

// Rank 0: the unsharded model on the same prompt. Returns whether it matches.
bool check_against_unsharded(const Options& o, const std::vector<int64_t>& prompt, const models::Generation& sharded) {
  auto model = models::load_unsharded(o.model_dir, o.dtype);
  const models::Generation reference = models::generate_greedy(*model, prompt, o.max_new_tokens);
  const bool ids_match = reference.new_ids == sharded.new_ids;
  const double diff = max_abs_diff(sharded.prompt_logits, reference.prompt_logits);
  const double bound = check_bound(o.dtype, reference.prompt_logits);
  fmt::print("check: ids_match={} max_abs_diff={:.3g}\n", ids_match ? "yes" : "no", diff);
  if (!ids_match) fmt::print("check: unsharded ids: {}\n", fmt::join(reference.new_ids, " "));
  if (diff > bound)
    fmt::print("check: max_abs_diff {:.3g} exceeds the {} bound {:.3g}\n", diff, dtype_name(o.dtype), bound);
  return ids_match && diff <= bound;
}

int run(Communicator& world, const Options& o) {
  const models::HFConfig config = models::load_hf_config(o.model_dir);
  const std::vector<int64_t> prompt = parse_prompt(o.prompt_ids, config.vocab_size);
  const nn::TpPlan plan =
      o.plan_file == "auto" ? models::auto_tp_plan(config) : nn::TpPlan::from_json_file(o.plan_file);
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});

  const auto load_start = std::chrono::steady_clock::now();
  nn::PlanReport report;
  auto model = models::load_sharded(o.model_dir, mesh, plan, o.dtype, &report);
  if (o.device == "cuda") model->to(local_gpu());
  const double load_seconds = seconds_since(load_start);
  const bool root = world.rank() == 0;
  auto stream = [&](int64_t id) {
    fmt::print("stream: {}\n", id);
    std::fflush(stdout);
  };
  models::Generation g = models::generate_greedy(*model, prompt, o.max_new_tokens,
                                                 o.stream && root ? stream : std::function<void(int64_t)>{});
  g.prompt_logits = g.prompt_logits.to(Device::cpu());
  model.reset();  // frees this rank's shards before --check loads the whole model

  if (root) {
    print_model(o, config, world.size(), load_seconds);
    if (o.explain) fmt::print("{}", report.explain);
    print_generation(prompt, g);
  }
  if (root && !o.dump_logits.empty()) {
    io::write_npy(o.dump_logits, g.prompt_logits);
    fmt::print("logits: wrote {} [{}, {}] f32\n", o.dump_logits, g.prompt_logits.size(0), g.prompt_logits.size(1));
  }
  if (!o.check) return 0;
  const bool ok = tools::share_verdict(world, root ? check_against_unsharded(o, prompt, g) : true);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Greedy generation with a checkpoint sharded over every rank (mpirun -np N)."};
    Options options;
    add_options(app, options);
    if (auto code = tools::parse_on_every_rank(app, argc, argv, world)) return *code;
    options.dtype = dtype_from_name(options.dtype_flag);
    return run(world, options);
  });
}
