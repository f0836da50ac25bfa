// Hugging Face `config.json` of the decoder architectures we build: LlamaForCausalLM and
// MixtralForCausalLM.
//
//   HFConfig config = load_hf_config("llama-7b/");   // a directory holding config.json, or the file
//   int64_t q_out = config.num_attention_heads * config.head_dim;
//
// Optional keys take transformers' defaults (LlamaConfig / MixtralConfig); a key given as JSON
// null counts as absent. Errors name the key: ValueError for a missing required key, a value of
// the wrong JSON type, an unknown architecture or a non-positive size; ShapeError for sizes that
// do not fit together (heads % kv_heads, hidden % heads without head_dim, experts_per_tok).
#pragma once

#include "tensor/dtype.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dtensor::models {

struct HFConfig {
  std::string architecture;  // the first (and used) entry of "architectures"
  std::vector<std::string> architectures;
  std::string model_type;  // "llama" / "mixtral" when given, else derived from the architecture

  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // default: num_attention_heads
  int64_t head_dim = 0;             // default: hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;  // default: 2048 (Llama), 131072 (Mixtral)
  double rms_norm_eps = 0;              // default: 1e-6 (Llama), 1e-5 (Mixtral)
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float32";  // "torch_dtype" (or newer "dtype") as written
  DType dtype = DType::F32;             // torch_dtype as ours

  // Mixture of experts (Mixtral); 0 for dense models.
  int64_t num_local_experts = 0;    // default: 8
  int64_t num_experts_per_tok = 0;  // default: 2

  bool is_moe() const { return num_local_experts > 0; }
};

// The architectures this parser knows.
const std::vector<std::string>& supported_hf_architectures();

// Parses config.json text; `source` (a path, say) prefixes every error message.
HFConfig parse_hf_config(std::string_view json_text, const std::string& source = "config.json");
// Reads `path`, or `path`/config.json when `path` is a directory; a `path` ending in ".gguf" is a
// GGUF file whose metadata gives the config (models/gguf_model.hpp).
HFConfig load_hf_config(const std::string& path);

}  // namespace dtensor::models
