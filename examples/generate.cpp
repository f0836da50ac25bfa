// `make demo`: greedy generation with a Llama / Mixtral checkpoint sharded over every rank.
//
//   scripts/mpirun.sh -np 4 build/examples/generate --model build/demo-model --check
//   scripts/mpirun.sh -np 2 build/examples/generate --model DIR --plan plan.json
//       --prompt-ids "1 15 29" --max-new-tokens 32 --dtype bf16 --dump-logits logits.npy --stream  (one line)
//   scripts/mpirun.sh -np 2 build/examples/generate --model SmolLM2-135M-Instruct.Q4_1.gguf
//       --prompt "What is the capital of France?" --chat --max-new-tokens 64  (one line)
//
// The model is loaded over a 1-D tensor-parallel mesh of all ranks with the --plan file's
// strategies (default `--plan auto`: the model's built-in plan), then generates greedily. Rank 0 prints the
// generated ids and the prefill and decode tokens per second (--stream: also each id, a line
// "stream: ID", as soon as it is chosen). --dump-logits writes the f32 logits
// of every prompt position, [prompt length, vocab], as a NumPy .npy file (rank 0).
// --check also runs the unsharded model on rank 0 and prints
//   check: ids_match=yes|no max_abs_diff=X
// over the prompt logits; the exit code is 1 on every rank when the ids differ or the difference
// exceeds the bound: for f32, max(1e-4, 1e-5 * largest |logit|) (a real model's logits reach tens,
// and 30 layers of f32 rounding in another summation order move them by ~40 ulps); for bf16, 0.05 * max(1, largest
// |logit|) (bf16 keeps 8 significant bits, and sharding changes the order of its rounded partial sums).
// --quantize int8|int8-outlier|q8_0|q4_0|q4_1|nf4 quantizes every Linear and the embedding table as
// they load (models/quant.hpp), each rank its own block; gguf keeps a .gguf model's own blocks; --check then compares
// with the unsharded model quantized the same way. The weights' quantized values are the same, so only the order of f32
// sums differs: the bound is max(1e-4, 1e-5 * largest |logit|) (the quantized kernels' sums run in another order than
// oneDNN's, over logits of tens). Formats whose kernels also round the activations (int8-outlier, q4_0, q4_1, gguf;
// models::quantizes_activations) may round one the other way in either model: bound 0.05 * max(1, largest |logit|), and
// the greedy ids need not match (a logit within that error of another's may win). Rank 0 reports its weight bytes
// against the same shards in f32 and bf16 and its resident memory after loading (VmRSS, and the peak VmHWM) in a line
// "memory: ...".
// --device cuda moves each rank's shards to its GPU after loading (through the CUDA backend library,
// libdtensor_cuda.so; DeviceError naming it and the reason where it cannot be loaded): ranks that share
// a GPU communicate through MPI with host staging; --check still runs the reference on the CPU.
// --prompt "text" (instead of --prompt-ids) encodes the text with the model's tokenizer (tokenizer.json
// in the model directory, or the GGUF file's tokenizer metadata; text/tokenizer.hpp), prints the
// answer as text on rank 0 token by token as it is generated (whole UTF-8 characters, flushed per
// token) and stops at the tokenizer's end-of-sequence token (tokenizer_config.json's eos_token,
// config.json's eos_token_id, or the GGUF's eos id) or after --max-new-tokens. --chat wraps the
// prompt in ChatML (<|im_start|>user ... <|im_start|>assistant), with --system's message first.
// (--stream's id lines are for --prompt-ids.) A prompt longer than the model's context
// (max_position_embeddings, llama.context_length), or one that --max-new-tokens would take past it,
// is an error naming the flag and the limit.
// Bad flags (examples/program_flags.hpp), prompt ids outside the vocabulary, and a config, plan or
// checkpoint that cannot be read are errors naming the flag or the file: the lowest rank that found
// one prints it and every rank exits non-zero, without an MPI abort. An error while generating
// ends the whole job with that rank's message.
#include "program_flags.hpp"

#include "collectives/nccl.hpp"
#include "collectives/runtime.hpp"
#include "io/npy.hpp"
#include "mesh/device_mesh.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "models/quant.hpp"
#include "nn/tp_plan.hpp"
#include "tensor/ops.hpp"
#include "text/tokenizer.hpp"
#include "tools/parse_on_every_rank.hpp"
#include "tools/report_on_every_rank.hpp"
#include "tools/share_verdict.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

using namespace dtensor;

namespace {

using programs::GenerateFlags;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; }

// The largest difference --check accepts for this dtype (see the header).
double check_bound(const GenerateFlags& o, const Tensor& reference_logits) {
  const double largest = std::max(1.0, amax(abs(reference_logits)).item<double>());
  if (o.dtype() == DType::F32 && !models::quantizes_activations(o.quantize)) return std::max(1e-4, 1e-5 * largest);
  return 0.05 * largest;
}

// With rounded activations a token whose logit lies within a quantization step of another's may
// come out differently.
bool ids_must_match(const GenerateFlags& o) { return o.quantize.empty() || !models::quantizes_activations(o.quantize); }

void print_model(const GenerateFlags& o, const models::HFConfig& config, int ranks, double load_seconds) {
  fmt::print(
      "model: {} ({}, {} layers, hidden {}, heads {}/{} kv, vocab {}{}), {} on {}, tp over {} rank(s), "
      "plan {}, loaded in {:.2f} s\n",
      o.model_dir, config.architecture, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
      config.num_key_value_heads, config.vocab_size,
      config.is_moe() ? fmt::format(", {} experts top-{}", config.num_local_experts, config.num_experts_per_tok) : "",
      dtype_name(o.dtype()), o.device, ranks, o.plan_file, load_seconds);
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
bool check_against_unsharded(const GenerateFlags& o, const std::vector<int64_t>& prompt,
                             const models::Generation& sharded, std::optional<int64_t> eos) {
  auto model = o.quantize.empty() ? models::load_unsharded(o.model_dir, o.dtype())
                                  : models::load_unsharded_quantized(o.model_dir, o.dtype(), o.quantize);
  const models::Generation reference = models::generate_greedy(*model, prompt, o.max_new_tokens, {}, eos);
  const bool ids_match = reference.new_ids == sharded.new_ids;
  const double diff = max_abs_diff(sharded.prompt_logits, reference.prompt_logits);
  const double bound = check_bound(o, reference.prompt_logits);
  fmt::print("check: ids_match={} max_abs_diff={:.3g}\n", ids_match ? "yes" : "no", diff);
  if (!ids_match) fmt::print("check: unsharded ids: {}\n", fmt::join(reference.new_ids, " "));
  if (diff > bound)
    fmt::print("check: max_abs_diff {:.3g} exceeds the {}{} bound {:.3g}\n", diff, dtype_name(o.dtype()),
               o.quantize.empty() ? "" : " " + o.quantize, bound);
  return (ids_match || !ids_must_match(o)) && diff <= bound;
}

// Everything each rank reads and checks before generating.
struct Loaded {
  models::HFConfig config;
  std::optional<text::Tokenizer> tokenizer;  // with --prompt
  std::optional<int64_t> eos;                // with --prompt: where generation stops
  std::vector<int64_t> prompt;
  nn::PlanReport report;
  std::shared_ptr<models::CausalLM> model;
  double load_seconds = 0;
  nn::LocalWeights weights;
  models::ResidentMemory memory;  // right after loading
};

// The end-of-sequence id: the tokenizer's, else config.json's eos_token_id (a number or a list).
std::optional<int64_t> eos_id(const std::string& model, const text::Tokenizer& tokenizer) {
  if (tokenizer.eos_id()) return tokenizer.eos_id();
  std::ifstream in(std::filesystem::path(model) / "config.json");
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.contains("eos_token_id")) return std::nullopt;
  const nlohmann::json& eos = config["eos_token_id"];
  if (eos.is_number_integer()) return eos.get<int64_t>();
  if (eos.is_array() && !eos.empty() && eos[0].is_number_integer()) return eos[0].get<int64_t>();
  return std::nullopt;
}

double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

// This rank's weights against the same shards in f32 and bf16, and its resident memory after loading.
void print_memory(const GenerateFlags& o, const Loaded& l) {
  const double f32 = 4.0 * double(l.weights.elements);
  fmt::print(
      "memory: weights {:.1f} MiB on rank 0 ({}; f32 {:.1f} MiB, bf16 {:.1f} MiB: {:.3f}x f32); resident after "
      "load VmRSS {:.1f} MiB, peak VmHWM {:.1f} MiB\n",
      mib(double(l.weights.bytes)), o.quantize.empty() ? dtype_name(o.dtype()) : o.quantize, mib(f32), mib(f32 / 2),
      double(l.weights.bytes) / f32, mib(double(l.memory.rss)), mib(double(l.memory.peak)));
}

Loaded load(const GenerateFlags& o, const DeviceMesh& mesh) {
  Loaded l;
  l.config = models::load_hf_config(o.model_dir);
  if (o.prompt) {
    l.tokenizer = programs::prompt_tokenizer(o.model_dir);
    l.eos = eos_id(o.model_dir, *l.tokenizer);
  }
  l.prompt = programs::prompt_ids(o, l.tokenizer ? &*l.tokenizer : nullptr, l.config.vocab_size,
                                  l.config.max_position_embeddings);
  const nn::TpPlan plan =
      o.plan_file == "auto" ? models::auto_tp_plan(l.config) : nn::TpPlan::from_json_file(o.plan_file);
  const auto load_start = std::chrono::steady_clock::now();
  l.model = o.quantize.empty()
                ? models::load_sharded(o.model_dir, mesh, plan, o.dtype(), &l.report)
                : models::load_sharded_quantized(o.model_dir, mesh, plan, o.dtype(), o.quantize, &l.report);
  if (o.plan_file != "auto") programs::check_plan_matched(l.report, o.plan_file, "generate");
  if (o.device == "cuda") l.model->to(local_gpu());
  l.load_seconds = seconds_since(load_start);
  l.weights = nn::local_weights(*l.model);
  l.memory = models::resident_memory();
  return l;
}

int run(Communicator& world, const GenerateFlags& o) {
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
  std::optional<Loaded> loaded = tools::report_on_every_rank(world, [&] { return load(o, mesh); });
  if (!loaded) return 1;
  const std::vector<int64_t>& prompt = loaded->prompt;
  const bool root = world.rank() == 0;
  std::function<void(int64_t)> on_token;
  std::optional<text::StreamDecoder> text_stream;
  if (root && loaded->tokenizer) {
    fmt::print("prompt: {}\nanswer: ", *o.prompt);
    std::fflush(stdout);
    text_stream.emplace(*loaded->tokenizer);
    on_token = [&](int64_t id) {
      fmt::print("{}", text_stream->push(id));
      std::fflush(stdout);
    };
  } else if (root && o.stream) {
    on_token = [](int64_t id) {
      fmt::print("stream: {}\n", id);
      std::fflush(stdout);
    };
  }
  models::Generation g = models::generate_greedy(*loaded->model, prompt, o.max_new_tokens, on_token, loaded->eos);
  if (text_stream) fmt::print("{}\n", text_stream->finish());
  g.prompt_logits = g.prompt_logits.to(Device::cpu());
  loaded->model.reset();  // frees this rank's shards before --check loads the whole model

  if (root) {
    print_model(o, loaded->config, world.size(), loaded->load_seconds);
    if (o.explain) fmt::print("{}", loaded->report.explain);
    print_memory(o, *loaded);
    print_generation(prompt, g);
  }
  if (root && !o.dump_logits.empty()) {
    io::write_npy(o.dump_logits, g.prompt_logits);
    fmt::print("logits: wrote {} [{}, {}] f32\n", o.dump_logits, g.prompt_logits.size(0), g.prompt_logits.size(1));
  }
  if (!o.check) return 0;
  const bool ok = tools::share_verdict(world, root ? check_against_unsharded(o, prompt, g, loaded->eos) : true);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Greedy generation with a checkpoint sharded over every rank (mpirun -np N)."};
    GenerateFlags flags;
    programs::add_flags(app, flags);
    if (auto code =
            tools::parse_on_every_rank(app, argc, argv, world, "generate", [&] { programs::check_flags(flags); }))
      return *code;
    return run(world, flags);
  });
}
