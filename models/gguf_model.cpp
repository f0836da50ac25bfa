#include "models/gguf_model.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <charconv>

namespace dtensor::models {

namespace {

// A positive integer metadata value, the error naming the key.
int64_t positive(const io::GgufFile& file, const std::string& key) {
  const int64_t value = file.get_int(key);
  check(value > 0, "gguf", "{}: metadata '{}' = {} must be positive", file.path(), key, value);
  return value;
}

int64_t vocab_size(const io::GgufFile& file, const std::string& arch) {
  if (file.has(arch + ".vocab_size")) return positive(file, arch + ".vocab_size");
  const std::string tokens = "tokenizer.ggml.tokens";
  check(file.has(tokens), "gguf", "{}: neither metadata '{}.vocab_size' nor '{}' gives the vocabulary size",
        file.path(), arch, tokens);
  const int64_t size = file.array_size(tokens);
  check(size > 0, "gguf", "{}: metadata '{}' is empty", file.path(), tokens);
  return size;
}

// Only the plain rotary embedding over the whole head is built.
void check_rope(const io::GgufFile& file, const std::string& arch, int64_t head_dim) {
  const std::string dims = arch + ".rope.dimension_count";
  if (file.has(dims)) {
    const int64_t rotary = file.get_int(dims);
    check(rotary == head_dim, "gguf", "{}: metadata '{}' = {}: only rotary over the whole head ({}) is supported",
          file.path(), dims, rotary, head_dim);
  }
  const std::string scaling = arch + ".rope.scaling.type";
  if (file.has(scaling)) {
    const std::string type = file.get_string(scaling);
    check(type == "none", "gguf", "{}: metadata '{}' = \"{}\": only unscaled rotary is supported", file.path(), scaling,
          type);
  }
}

nlohmann::json config_json(const io::GgufFile& file) {
  const std::string arch = file.get_string("general.architecture");
  check(arch == "llama", "gguf", "{}: metadata 'general.architecture' = \"{}\" is not supported (llama is)",
        file.path(), arch);
  const int64_t hidden = positive(file, arch + ".embedding_length");
  const int64_t heads = positive(file, arch + ".attention.head_count");
  const std::string key_length = arch + ".attention.key_length";
  nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", hidden},
      {"intermediate_size", positive(file, arch + ".feed_forward_length")},
      {"num_hidden_layers", positive(file, arch + ".block_count")},
      {"num_attention_heads", heads},
      {"num_key_value_heads",
       file.has(arch + ".attention.head_count_kv") ? positive(file, arch + ".attention.head_count_kv") : heads},
      {"max_position_embeddings", positive(file, arch + ".context_length")},
      {"rms_norm_eps", file.get_float(arch + ".attention.layer_norm_rms_epsilon")},
      {"rope_theta", file.has(arch + ".rope.freq_base") ? file.get_float(arch + ".rope.freq_base") : 10000.0},
      {"vocab_size", vocab_size(file, arch)},
      {"tie_word_embeddings", !file.contains("output.weight")},
      {"torch_dtype", "float32"},
  };
  if (file.has(key_length)) config["head_dim"] = positive(file, key_length);
  check_rope(file, arch, file.has(key_length) ? file.get_int(key_length) : hidden / heads);
  return config;
}

// Our names inside model.layers.N and the blk.N tensors holding them.
constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kLayerTensors = {{
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
}};

[[noreturn]] void unknown_parameter(const std::string& name) {
  fail("gguf", "parameter '{}' has no tensor in a Llama GGUF", name);
}

// q_proj / k_proj rows in transformers' order over the GGUF's permuted rows: our row i (head h,
// half t, pair j: i = h * head_dim + t * head_dim / 2 + j) is GGUF row h * head_dim + 2 * j + t.
io::TensorSource unpermuted_rows(io::TensorSource permuted, int64_t head_dim, const std::string& what) {
  check<ShapeError>(permuted.shape.size() == 2 && head_dim % 2 == 0 && permuted.shape[0] % head_dim == 0, "gguf",
                    "{}: shape {} is not whole heads of head_dim {}", what, shape_str(permuted.shape), head_dim);
  auto read = [permuted, head_dim](const Shape& offset, const Tensor& out) {
    const int64_t half = head_dim / 2;
    for (int64_t i = 0; i < out.size(0); ++i) {
      const int64_t row = offset[0] + i, within = row % head_dim;
      const int64_t source_row = row - within + 2 * (within % half) + within / half;
      permuted.read_box({source_row, offset[1]}, out.narrow(0, i, 1));
    }
  };
  return {permuted.dtype, permuted.shape, read};
}

}  // namespace

bool is_gguf_path(const std::string& path) { return path.ends_with(".gguf"); }

HFConfig gguf_hf_config(const io::GgufFile& file) { return parse_hf_config(config_json(file).dump(), file.path()); }

std::string gguf_config_json(const io::GgufFile& file) { return config_json(file).dump(2) + "\n"; }

std::string gguf_tensor_name(const std::string& name, const HFConfig& config) {
  if (name == "model.embed_tokens.weight") return "token_embd.weight";
  if (name == "model.norm.weight") return "output_norm.weight";
  if (name == "lm_head.weight") return config.tie_word_embeddings ? "token_embd.weight" : "output.weight";
  constexpr std::string_view kLayers = "model.layers.";
  if (!name.starts_with(kLayers)) unknown_parameter(name);
  const char* begin = name.data() + kLayers.size();
  const char* end = name.data() + name.size();
  int64_t layer = -1;
  const auto [after, error] = std::from_chars(begin, end, layer);
  if (error != std::errc() || after == end || *after != '.' || layer < 0) unknown_parameter(name);
  const std::string_view rest(after + 1, size_t(end - after - 1));
  for (const auto& [ours, theirs] : kLayerTensors) {
    if (rest == ours) return fmt::format("blk.{}.{}", layer, theirs);
  }
  unknown_parameter(name);
}

nn::SourceLookup gguf_sources(const io::GgufFile& file, const HFConfig& config) {
  return [file, config](const std::string& name) -> io::TensorSource {
    const std::string tensor = gguf_tensor_name(name, config);
    io::TensorSource source = io::tensor_source(file, tensor);
    const std::string what = fmt::format("{}: tensor '{}'", file.path(), tensor);
    if (name.ends_with("self_attn.q_proj.weight") || name.ends_with("self_attn.k_proj.weight")) {
      return unpermuted_rows(std::move(source), config.head_dim, what);
    }
    return source;
  };
}

}  // namespace dtensor::models
