// Seeded random checkpoints in Hugging Face layout (config.json + safetensors), for tests,
// benchmarks and the demo: LlamaForCausalLM or MixtralForCausalLM of any size, f32 or bf16.
// A tool outside libdtensor: programs link random_checkpoint_dep (tools/meson.build).
//
//   RandomCheckpointSpec spec;                     // a tiny Llama by default
//   spec.hidden = 1024; spec.layers = 8; spec.seed = 7;
//   write_random_checkpoint("build/bench-model", spec);
//   auto model = models::load_sharded("build/bench-model", mesh, plan, DType::F32);
//
// The same spec always gives the same bytes: each tensor draws from Philox keyed by the seed and
// the tensor's name. Scales keep activations O(1) and greedy choices clear of near-ties: linear
// weights uniform with std 1/sqrt(fan_in), norm weights uniform in [0.75, 1.25], embedding and
// lm_head std 4/sqrt(hidden) (logits of std ~4, tied or not), router std 2/sqrt(hidden).
//
// Tensors are generated one shard at a time and written as soon as their shard is complete, so
// memory holds at most one shard (the whole model for max_shard_bytes = 0). Every file is written
// atomically; config.json is written last, so a directory with a config.json is complete.
#pragma once

#include "tensor/dtype.hpp"
#include "tensor/tensor.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace dtensor::tools {

struct RandomCheckpointSpec {
  std::string architecture = "LlamaForCausalLM";  // or "MixtralForCausalLM"
  int64_t hidden = 64;
  int64_t intermediate = 128;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t head_dim = 0;  // 0: hidden / heads (config.json then omits the key)
  int64_t vocab = 256;
  int64_t experts = 4;          // Mixtral only
  int64_t experts_per_tok = 2;  // Mixtral only
  int64_t max_position_embeddings = 4096;
  bool tie_word_embeddings = false;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  DType dtype = DType::F32;  // F32 or BF16
  uint64_t seed = 0;
  int64_t max_shard_bytes = 0;  // 0: one model.safetensors; else shards + index of at most this
};

bool is_mixtral(const RandomCheckpointSpec& spec);

// The config.json object transformers reads for this spec. ValueError / ShapeError (from
// models::parse_hf_config's checks) when the spec's sizes do not fit together.
nlohmann::json random_checkpoint_config(const RandomCheckpointSpec& spec);

// One tensor of the checkpoint and how it is initialised.
struct RandomTensorSpec {
  std::string name;
  Shape shape;
  double low = 0, high = 0;  // uniform in [low, high)
};
// Every tensor of the checkpoint, in Hugging Face's order (embedding, layers, norm, lm_head).
std::vector<RandomTensorSpec> random_checkpoint_tensors(const RandomCheckpointSpec& spec);
// The values of one tensor (deterministic in the spec's seed and the tensor's name).
Tensor random_checkpoint_tensor(const RandomTensorSpec& tensor, const RandomCheckpointSpec& spec);

// Writes `dir` (created if needed; checkpoint files of an earlier write that this one does not
// use are removed). ValueError naming the field for a bad spec or an unwritable directory.
void write_random_checkpoint(const std::string& dir, const RandomCheckpointSpec& spec);

}  // namespace dtensor::tools
