// Helpers of the model tests: tiny Llama / Mixtral checkpoints with random weights written in
// Hugging Face's layout (config.json + model.safetensors, Mixtral experts as per-expert w1 / w2 /
// w3), by rank 0 into a directory every rank of the job shares.
//
// Weights are uniform with standard deviation 1 / sqrt(fan_in) (embeddings 1, norms in
// [0.75, 1.25], the router 2 / sqrt(hidden)) and lm_head 4 / sqrt(hidden), so activations stay O(1)
// and logits spread wide: greedy choices are far from ties, and f32 results of different
// summation orders agree to ~1e-6.
#pragma once

#include <catch2/catch.hpp>

#include "collectives/runtime.hpp"
#include "io/checkpoint_writer.hpp"
#include "mesh/device_mesh.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "tensor/random.hpp"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace models_test {

using namespace dtensor;
namespace fs = std::filesystem;

struct TinySpec {
  std::string architecture = "LlamaForCausalLM";
  int64_t hidden = 16, intermediate = 24, layers = 2, heads = 4, kv_heads = 2;
  int64_t head_dim = 0;  // 0: not in config.json (hidden / heads)
  int64_t vocab = 37;
  int64_t experts = 4, top_k = 2;  // Mixtral only
  bool tie = false;
  DType dtype = DType::F32;  // of the checkpoint's tensors
  uint64_t seed = 1;

  bool mixtral() const { return architecture == "MixtralForCausalLM"; }
  int64_t dim() const { return head_dim > 0 ? head_dim : hidden / heads; }
};

// The 1-D mesh of every rank, the models' tensor-parallel line.
inline DeviceMesh world_line() { return DeviceMesh::from_world({world().size()}); }

inline std::string config_json(const TinySpec& s) {
  std::string json = fmt::format(
      R"({{"architectures": ["{}"], "hidden_size": {}, "intermediate_size": {}, "num_hidden_layers": {},
 "num_attention_heads": {}, "num_key_value_heads": {}, "vocab_size": {}, "rms_norm_eps": 1e-5,
 "rope_theta": 1000.0, "tie_word_embeddings": {}, "torch_dtype": "{}")",
      s.architecture, s.hidden, s.intermediate, s.layers, s.heads, s.kv_heads, s.vocab, s.tie ? "true" : "false",
      s.dtype == DType::BF16 ? "bfloat16" : "float32");
  if (s.head_dim > 0) json += fmt::format(R"(, "head_dim": {})", s.head_dim);
  if (s.mixtral()) json += fmt::format(R"(, "num_local_experts": {}, "num_experts_per_tok": {})", s.experts, s.top_k);
  return json + "}";
}

// Uniform values with the given standard deviation (or in [low, high) when centre is set).
inline Tensor uniform(const Shape& shape, uint64_t seed, double std, DType dtype, double centre = 0) {
  const double half = std * std::sqrt(3.0);
  return random(shape, DType::F64, {.seed = seed, .a = centre - half, .b = centre + half}).to(dtype);
}

// Every tensor of the checkpoint under its Hugging Face name.
inline io::NamedTensors tiny_weights(const TinySpec& s) {
  io::NamedTensors out;
  uint64_t seed = s.seed * 1000;
  auto add = [&](const std::string& name, const Shape& shape, double std, double centre = 0) {
    out.emplace_back(name, uniform(shape, seed++, std, s.dtype, centre));
  };
  auto linear = [&](const std::string& name, int64_t out_features, int64_t in_features) {
    add(name, {out_features, in_features}, 1.0 / std::sqrt(double(in_features)));
  };
  const int64_t h = s.hidden, d = s.dim(), i = s.intermediate;
  add("model.embed_tokens.weight", {s.vocab, h}, 1.0);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {h}, 0.25 / std::sqrt(3.0), 1.0);
    linear(p + "self_attn.q_proj.weight", s.heads * d, h);
    linear(p + "self_attn.k_proj.weight", s.kv_heads * d, h);
    linear(p + "self_attn.v_proj.weight", s.kv_heads * d, h);
    linear(p + "self_attn.o_proj.weight", h, s.heads * d);
    add(p + "post_attention_layernorm.weight", {h}, 0.25 / std::sqrt(3.0), 1.0);
    if (s.mixtral()) {
      add(p + "block_sparse_moe.gate.weight", {s.experts, h}, 2.0 / std::sqrt(double(h)));
      for (int64_t e = 0; e < s.experts; ++e) {
        const std::string x = fmt::format("{}block_sparse_moe.experts.{}.", p, e);
        linear(x + "w1.weight", i, h);
        linear(x + "w2.weight", h, i);
        linear(x + "w3.weight", i, h);
      }
    } else {
      linear(p + "mlp.gate_proj.weight", i, h);
      linear(p + "mlp.up_proj.weight", i, h);
      linear(p + "mlp.down_proj.weight", h, i);
    }
  }
  add("model.norm.weight", {h}, 0.25 / std::sqrt(3.0), 1.0);
  if (!s.tie) add("lm_head.weight", {s.vocab, h}, 4.0 / std::sqrt(double(h)));
  return out;
}

// A directory every rank of the world names alike (rank 0's pid and a counter); rank 0 creates
// and, when the object goes, removes it.
class SharedDir {
 public:
  SharedDir() {
    static int counter = 0;
    Tensor pid = Tensor::from_vector<int64_t>({int64_t(::getpid())}, {1});
    world().broadcast(pid, 0);
    path_ = fs::temp_directory_path() / fmt::format("dtensor-models-{}-{}", pid.item<int64_t>(), counter++);
    if (world().rank() == 0) fs::create_directories(path_);
    world().barrier();
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  ~SharedDir() {
    world().barrier();  // nobody reads any more
    std::error_code ignored;
    if (world().rank() == 0) fs::remove_all(path_, ignored);
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Rank 0 writes config.json (as given) and the tensors; every rank returns once they exist.
inline void write_checkpoint(const SharedDir& dir, const std::string& config, const io::NamedTensors& tensors) {
  if (world().rank() == 0) {
    io::save_checkpoint(dir.str(), tensors);
    std::ofstream(dir.str() + "/config.json") << config;
  }
  world().barrier();
}

inline void write_checkpoint(const SharedDir& dir, const TinySpec& spec) {
  write_checkpoint(dir, config_json(spec), tiny_weights(spec));
}

// The models the training tests use: a tied Llama with 6 heads over 2 KV heads, and a Mixtral.
inline TinySpec tied_llama() {
  TinySpec spec;
  spec.hidden = 24;
  spec.heads = 6;
  spec.kv_heads = 2;
  spec.tie = true;
  return spec;
}

inline TinySpec mixtral() {
  TinySpec spec;
  spec.architecture = "MixtralForCausalLM";
  spec.intermediate = 22;
  spec.seed = 3;
  return spec;
}

// The plans a training step is checked under; "unsharded" loads without one.
inline std::vector<std::pair<std::string, dtensor::nn::TpPlan>> training_plans(
    const dtensor::models::HFConfig& config) {
  dtensor::nn::TpPlan vocab_parallel = dtensor::models::auto_tp_plan(config);
  for (dtensor::nn::TpRule& rule : vocab_parallel.rules)
    if (rule.pattern == "lm_head") rule.strategy = "colwise";
  return {{"auto", dtensor::models::auto_tp_plan(config)},
          {"sequence parallel", dtensor::models::sequence_parallel_tp_plan(config)},
          {"vocab-parallel lm_head", vocab_parallel}};
}

}  // namespace models_test
