#include "tools/random_checkpoint.hpp"

#include "io/checkpoint.hpp"
#include "io/checkpoint_writer.hpp"
#include "models/hf_config.hpp"
#include "tensor/error.hpp"
#include "tensor/random.hpp"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

namespace dtensor::tools {

namespace fs = std::filesystem;

namespace {

constexpr const char* kOp = "write_random_checkpoint";

// FNV-1a of the name, then a splitmix64 finaliser with the seed: one Philox key per tensor.
uint64_t tensor_key(const std::string& name, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  uint64_t z = h ^ (seed + 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int64_t head_dim_of(const RandomCheckpointSpec& spec) {
  return spec.head_dim > 0 ? spec.head_dim : spec.hidden / spec.heads;
}

// Uniform in [-a, a) has standard deviation a / sqrt(3).
RandomTensorSpec uniform_with_std(std::string name, Shape shape, double std) {
  const double a = std * std::sqrt(3.0);
  return {std::move(name), std::move(shape), -a, a};
}
RandomTensorSpec linear_weight(std::string name, int64_t out, int64_t in) {
  return uniform_with_std(std::move(name), {out, in}, 1.0 / std::sqrt(double(in)));
}
// Embedding and lm_head: logits of a unit-RMS hidden state get std ~4, tied or not, and a token's
// own embedding stays a small part of the residual stream (a larger one makes tied models repeat
// the last token).
double output_std(const RandomCheckpointSpec& spec) { return 4.0 / std::sqrt(double(spec.hidden)); }
RandomTensorSpec norm_weight(std::string name, int64_t size) { return {std::move(name), {size}, 0.75, 1.25}; }

void add_attention(std::vector<RandomTensorSpec>& out, const std::string& prefix, const RandomCheckpointSpec& spec) {
  const int64_t q_size = spec.heads * head_dim_of(spec), kv_size = spec.kv_heads * head_dim_of(spec);
  out.push_back(linear_weight(prefix + "self_attn.q_proj.weight", q_size, spec.hidden));
  out.push_back(linear_weight(prefix + "self_attn.k_proj.weight", kv_size, spec.hidden));
  out.push_back(linear_weight(prefix + "self_attn.v_proj.weight", kv_size, spec.hidden));
  out.push_back(linear_weight(prefix + "self_attn.o_proj.weight", spec.hidden, q_size));
}

void add_mlp(std::vector<RandomTensorSpec>& out, const std::string& prefix, const RandomCheckpointSpec& spec) {
  out.push_back(linear_weight(prefix + "mlp.gate_proj.weight", spec.intermediate, spec.hidden));
  out.push_back(linear_weight(prefix + "mlp.up_proj.weight", spec.intermediate, spec.hidden));
  out.push_back(linear_weight(prefix + "mlp.down_proj.weight", spec.hidden, spec.intermediate));
}

void add_moe(std::vector<RandomTensorSpec>& out, const std::string& prefix, const RandomCheckpointSpec& spec) {
  const std::string moe = prefix + "block_sparse_moe.";
  out.push_back(
      uniform_with_std(moe + "gate.weight", {spec.experts, spec.hidden}, 2.0 / std::sqrt(double(spec.hidden))));
  for (int64_t e = 0; e < spec.experts; ++e) {
    const std::string expert = fmt::format("{}experts.{}.", moe, e);
    out.push_back(linear_weight(expert + "w1.weight", spec.intermediate, spec.hidden));
    out.push_back(linear_weight(expert + "w2.weight", spec.hidden, spec.intermediate));
    out.push_back(linear_weight(expert + "w3.weight", spec.intermediate, spec.hidden));
  }
}

void check_spec(const RandomCheckpointSpec& spec) {
  check(spec.dtype == DType::F32 || spec.dtype == DType::BF16, kOp, "dtype must be f32 or bf16, got {}",
        dtype_name(spec.dtype));
  check(spec.max_shard_bytes >= 0, kOp, "max_shard_bytes must be >= 0, got {}", spec.max_shard_bytes);
  check(spec.head_dim >= 0, kOp, "head_dim must be >= 0 (0 = hidden / heads), got {}", spec.head_dim);
  // The remaining checks are config.json's: the same ones our loader applies.
  models::parse_hf_config(random_checkpoint_config(spec).dump(), "random checkpoint spec");
}

// Writes text to path through a temporary file renamed over it.
void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path temp = path.string() + fmt::format(".tmp.{}", ::getpid());
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    file << text;
    file.close();
    check(bool(file), kOp, "{}: cannot write", temp.string());
  }
  std::error_code error;
  fs::rename(temp, path, error);
  check(!error, kOp, "cannot rename {} to {}: {}", temp.string(), path.string(), error.message());
}

bool is_checkpoint_file(const std::string& name) {
  static const std::regex shard(R"(model-\d{5}-of-\d{5}\.safetensors)");
  return name == io::kSingleFileName || name == io::kIndexFileName || std::regex_match(name, shard);
}

void remove_stale_files(const fs::path& dir, const std::set<std::string>& written) {
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (is_checkpoint_file(name) && !written.contains(name)) fs::remove(entry.path());
  }
}

std::vector<std::vector<size_t>> shard_plan(const std::vector<RandomTensorSpec>& tensors,
                                            const RandomCheckpointSpec& spec) {
  std::vector<uint64_t> sizes;
  for (const RandomTensorSpec& t : tensors) sizes.push_back(uint64_t(shape_numel(t.shape)) * dtype_size(spec.dtype));
  if (spec.max_shard_bytes == 0) {
    std::vector<size_t> all(tensors.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    return {all};
  }
  return io::plan_shards(sizes, uint64_t(spec.max_shard_bytes));
}

void write_index(const fs::path& dir, const std::vector<RandomTensorSpec>& tensors,
                 const std::vector<std::vector<size_t>>& shards, const RandomCheckpointSpec& spec) {
  nlohmann::json index;
  uint64_t total = 0;
  index["weight_map"] = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    for (size_t i : shards[s]) {
      index["weight_map"][tensors[i].name] = io::shard_file_name(s, shards.size());
      total += uint64_t(shape_numel(tensors[i].shape)) * dtype_size(spec.dtype);
    }
  }
  index["metadata"] = {{"total_size", total}};
  write_text_atomically(dir / io::kIndexFileName, index.dump(2) + "\n");
}

}  // namespace

bool is_mixtral(const RandomCheckpointSpec& spec) { return spec.architecture == "MixtralForCausalLM"; }

nlohmann::json random_checkpoint_config(const RandomCheckpointSpec& spec) {
  nlohmann::json config = {
      {"architectures", {spec.architecture}},
      {"model_type", is_mixtral(spec) ? "mixtral" : "llama"},
      {"hidden_size", spec.hidden},
      {"intermediate_size", spec.intermediate},
      {"num_hidden_layers", spec.layers},
      {"num_attention_heads", spec.heads},
      {"num_key_value_heads", spec.kv_heads},
      {"vocab_size", spec.vocab},
      {"max_position_embeddings", spec.max_position_embeddings},
      {"rms_norm_eps", spec.rms_norm_eps},
      {"rope_theta", spec.rope_theta},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", spec.tie_word_embeddings},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"torch_dtype", spec.dtype == DType::BF16 ? "bfloat16" : "float32"},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
  };
  if (spec.head_dim > 0) config["head_dim"] = spec.head_dim;
  if (is_mixtral(spec)) {
    config["num_local_experts"] = spec.experts;
    config["num_experts_per_tok"] = spec.experts_per_tok;
    config["sliding_window"] = nullptr;
    config["router_aux_loss_coef"] = 0.0;
  } else {
    config["mlp_bias"] = false;
  }
  return config;
}

std::vector<RandomTensorSpec> random_checkpoint_tensors(const RandomCheckpointSpec& spec) {
  std::vector<RandomTensorSpec> out;
  out.push_back(uniform_with_std("model.embed_tokens.weight", {spec.vocab, spec.hidden}, output_std(spec)));
  for (int64_t i = 0; i < spec.layers; ++i) {
    const std::string prefix = fmt::format("model.layers.{}.", i);
    out.push_back(norm_weight(prefix + "input_layernorm.weight", spec.hidden));
    add_attention(out, prefix, spec);
    out.push_back(norm_weight(prefix + "post_attention_layernorm.weight", spec.hidden));
    if (is_mixtral(spec))
      add_moe(out, prefix, spec);
    else
      add_mlp(out, prefix, spec);
  }
  out.push_back(norm_weight("model.norm.weight", spec.hidden));
  if (!spec.tie_word_embeddings) {
    out.push_back(uniform_with_std("lm_head.weight", {spec.vocab, spec.hidden}, output_std(spec)));
  }
  return out;
}

Tensor random_checkpoint_tensor(const RandomTensorSpec& tensor, const RandomCheckpointSpec& spec) {
  RandomOptions options{.seed = tensor_key(tensor.name, spec.seed),
                        .distribution = Distribution::Uniform,
                        .a = tensor.low,
                        .b = tensor.high};
  return random(tensor.shape, spec.dtype, options);
}

void write_random_checkpoint(const std::string& dir, const RandomCheckpointSpec& spec) {
  check_spec(spec);
  const fs::path path(dir);
  std::error_code error;
  fs::create_directories(path, error);
  check(!error, kOp, "{}: cannot create the directory: {}", dir, error.message());
  fs::remove(path / "config.json");  // until the last step: an interrupted write reads as missing

  const std::vector<RandomTensorSpec> tensors = random_checkpoint_tensors(spec);
  const std::vector<std::vector<size_t>> shards = shard_plan(tensors, spec);
  std::set<std::string> written;
  for (size_t s = 0; s < shards.size(); ++s) {
    io::NamedTensors shard;
    for (size_t i : shards[s]) shard.emplace_back(tensors[i].name, random_checkpoint_tensor(tensors[i], spec));
    const std::string name = io::shard_file_name(s, shards.size());
    io::write_safetensors((path / name).string(), shard, {{"format", "pt"}});
    written.insert(name);
  }
  if (shards.size() > 1) {
    write_index(path, tensors, shards, spec);
    written.insert(io::kIndexFileName);
  }
  remove_stale_files(path, written);
  write_text_atomically(path / "config.json", random_checkpoint_config(spec).dump(2) + "\n");
}

}  // namespace dtensor::tools
