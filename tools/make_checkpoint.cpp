// Writes a seeded random checkpoint in Hugging Face layout (config.json + safetensors), as the
// demo, the tests and bench-tp-forward use. One process, no MPI.
//
//   build/tools/make_checkpoint --out build/demo-model --arch llama --hidden 128 --layers 2
//       --heads 8 --kv-heads 4 --intermediate 352 --vocab 1000 --seed 1      (one command line)
//   build/tools/make_checkpoint --out /tmp/moe --arch mixtral --experts 4 --experts-per-tok 2
//       --dtype bf16 --max-shard-bytes 1000000      (several files + model.safetensors.index.json)
//
// Prints one line: the directory, architecture, parameter count, bytes, files and seconds.
// Exit code 1 with the error's message for a spec that does not fit together.
#include "io/checkpoint.hpp"
#include "tensor/error.hpp"
#include "tools/random_checkpoint.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>

using namespace dtensor;

namespace {

// The short names --arch takes, and the config.json class names they stand for.
std::string architecture_name(const std::string& arch) {
  if (arch == "llama") return "LlamaForCausalLM";
  if (arch == "mixtral") return "MixtralForCausalLM";
  return arch;
}

// Flags that are strings on the command line and typed in the spec.
struct TextFlags {
  std::string arch = "llama";
  std::string dtype = "f32";
};

void add_size_options(CLI::App& app, tools::RandomCheckpointSpec& spec) {
  const auto positive = CLI::PositiveNumber;
  app.add_option("--hidden", spec.hidden, "hidden_size")->check(positive)->capture_default_str();
  app.add_option("--intermediate", spec.intermediate, "intermediate_size (per expert for Mixtral)")
      ->check(positive)
      ->capture_default_str();
  app.add_option("--layers", spec.layers, "num_hidden_layers")->check(positive)->capture_default_str();
  app.add_option("--heads", spec.heads, "num_attention_heads")->check(positive)->capture_default_str();
  app.add_option("--kv-heads", spec.kv_heads, "num_key_value_heads")->check(positive)->capture_default_str();
  app.add_option("--head-dim", spec.head_dim, "head_dim (0: hidden / heads, key omitted)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--vocab", spec.vocab, "vocab_size")->check(positive)->capture_default_str();
  app.add_option("--experts", spec.experts, "num_local_experts (Mixtral)")->check(positive)->capture_default_str();
  app.add_option("--experts-per-tok", spec.experts_per_tok, "num_experts_per_tok (Mixtral)")
      ->check(positive)
      ->capture_default_str();
  app.add_option("--max-position-embeddings", spec.max_position_embeddings, "max_position_embeddings")
      ->check(positive)
      ->capture_default_str();
}

void add_options(CLI::App& app, tools::RandomCheckpointSpec& spec, TextFlags& text, std::string& out) {
  app.add_option("--out", out, "checkpoint directory (created; earlier checkpoint files replaced)")->required();
  app.add_option("--arch", text.arch, "llama | mixtral (or the HF class name)")
      ->check(CLI::IsMember({"llama", "mixtral", "LlamaForCausalLM", "MixtralForCausalLM"}))
      ->capture_default_str();
  add_size_options(app, spec);
  app.add_flag("--tie-word-embeddings", spec.tie_word_embeddings, "no lm_head.weight: logits use the embedding");
  app.add_option("--rope-theta", spec.rope_theta, "rope_theta")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--rms-norm-eps", spec.rms_norm_eps, "rms_norm_eps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--dtype", text.dtype, "f32 | bf16")->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  app.add_option("--seed", spec.seed, "random seed")->capture_default_str();
  app.add_option("--max-shard-bytes", spec.max_shard_bytes,
                 "0: one model.safetensors; else shards of at most this many bytes + index")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

int64_t parameter_count(const tools::RandomCheckpointSpec& spec) {
  int64_t count = 0;
  for (const tools::RandomTensorSpec& t : tools::random_checkpoint_tensors(spec)) count += shape_numel(t.shape);
  return count;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Writes a seeded random Llama / Mixtral checkpoint in Hugging Face layout."};
  tools::RandomCheckpointSpec spec;
  TextFlags text;
  std::string out;
  add_options(app, spec, text, out);
  CLI11_PARSE(app, argc, argv);
  spec.architecture = architecture_name(text.arch);
  spec.dtype = dtype_from_name(text.dtype);
  try {
    const auto start = std::chrono::steady_clock::now();
    tools::write_random_checkpoint(out, spec);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int64_t params = parameter_count(spec);
    const size_t files = io::Checkpoint::open(out).files().size();
    fmt::print("wrote {}: {}, {:.2f} M parameters, {} ({}), {} file(s), {:.1f} s\n", out, spec.architecture,
               double(params) / 1e6, io::format_bytes(uint64_t(params) * dtype_size(spec.dtype)),
               dtype_name(spec.dtype), files, seconds);
  } catch (const Error& e) {
    fmt::print(stderr, "make_checkpoint: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
