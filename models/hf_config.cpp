#include "models/hf_config.hpp"

#include "models/gguf_model.hpp"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace dtensor::models {

namespace {

using nlohmann::json;

// Typed access to the keys of one config object; every error names the source and the key.
class ConfigReader {
 public:
  ConfigReader(const json& config, const std::string& source) : config_(config), source_(source) {}

  // nullptr when the key is absent or null.
  const json* find(const char* key) const {
    auto it = config_.find(key);
    return it == config_.end() || it->is_null() ? nullptr : &*it;
  }
  const json& require(const char* key) const {
    const json* value = find(key);
    check(value != nullptr, "hf_config", "{}: missing required key \"{}\"", source_, key);
    return *value;
  }
  void expect(bool ok, const char* key, const json& value, const char* type) const {
    check(ok, "hf_config", "{}: key \"{}\" must be {}, got {} {}", source_, key, type, value.type_name(), value.dump());
  }

  int64_t integer(const json& value, const char* key) const {
    expect(value.is_number_integer(), key, value, "an integer");
    return value.get<int64_t>();
  }
  int64_t positive(const json& value, const char* key) const {
    const int64_t n = integer(value, key);
    check(n > 0, "hf_config", "{}: key \"{}\" must be positive, got {}", source_, key, n);
    return n;
  }
  int64_t required_positive(const char* key) const { return positive(require(key), key); }
  int64_t optional_positive(const char* key, int64_t fallback) const {
    const json* value = find(key);
    return value ? positive(*value, key) : fallback;
  }
  double number(const char* key, double fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    expect(value->is_number(), key, *value, "a number");
    return value->get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    expect(value->is_boolean(), key, *value, "true or false");
    return value->get<bool>();
  }
  std::optional<std::string> string(const char* key) const {
    const json* value = find(key);
    if (!value) return std::nullopt;
    expect(value->is_string(), key, *value, "a string");
    return value->get<std::string>();
  }
  const std::string& source() const { return source_; }

 private:
  const json& config_;
  const std::string& source_;
};

DType dtype_from_torch(const std::string& name, const char* key, const std::string& source) {
  if (name == "float32" || name == "float") return DType::F32;
  if (name == "float16" || name == "half") return DType::F16;
  if (name == "bfloat16") return DType::BF16;
  if (name == "float64" || name == "double") return DType::F64;
  fail<DTypeError>("hf_config", "{}: key \"{}\" is \"{}\" (expected float32, float16, bfloat16 or float64)", source,
                   key, name);
}

void read_architecture(const ConfigReader& reader, HFConfig& config) {
  const json& list = reader.require("architectures");
  reader.expect(list.is_array() && !list.empty(), "architectures", list, "a non-empty array of strings");
  for (const json& entry : list) {
    reader.expect(entry.is_string(), "architectures", list, "a non-empty array of strings");
    config.architectures.push_back(entry.get<std::string>());
  }
  config.architecture = config.architectures.front();
  const auto& known = supported_hf_architectures();
  check(std::find(known.begin(), known.end(), config.architecture) != known.end(), "hf_config",
        "{}: key \"architectures\" names unknown architecture \"{}\" (supported: {})", reader.source(),
        config.architecture, fmt::join(known, ", "));
}

// Rotary parameters. transformers >= 4.57 writes {"rope_parameters": {"rope_type": "default",
// "rope_theta": 10000.0}}; older versions a top-level "rope_theta" and "rope_scaling" (null for the
// plain rotary embedding). Only the plain one is built, so scaled types (linear, dynamic, yarn,
// llama3, ...) are refused rather than computed wrongly.
void check_plain_rope(const json& params, const std::string& key, const std::string& source) {
  const char* type_keys[] = {"rope_type", "type"};
  for (const char* type_key : type_keys) {
    auto it = params.find(type_key);
    if (it == params.end() || it->is_null()) continue;
    check(it->is_string() && *it == "default", "hf_config",
          "{}: key \"{}.{}\" is {}: only the default rotary embedding is supported", source, key, type_key, it->dump());
  }
}

double read_rope_theta(const ConfigReader& reader) {
  if (const json* params = reader.find("rope_parameters")) {
    reader.expect(params->is_object(), "rope_parameters", *params, "an object");
    check_plain_rope(*params, "rope_parameters", reader.source());
    return ConfigReader(*params, reader.source()).number("rope_theta", 10000.0);
  }
  if (const json* scaling = reader.find("rope_scaling")) {
    reader.expect(scaling->is_object(), "rope_scaling", *scaling, "an object or null");
    check(scaling->contains("rope_type") || scaling->contains("type"), "hf_config",
          "{}: key \"rope_scaling\" is {}: only the default rotary embedding is supported", reader.source(),
          scaling->dump());
    check_plain_rope(*scaling, "rope_scaling", reader.source());
  }
  return reader.number("rope_theta", 10000.0);
}

void check_consistency(const HFConfig& c, const std::string& source, bool head_dim_given) {
  check<ShapeError>(c.num_attention_heads % c.num_key_value_heads == 0, "hf_config",
                    "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", source,
                    c.num_attention_heads, c.num_key_value_heads);
  check<ShapeError>(head_dim_given || c.hidden_size % c.num_attention_heads == 0, "hf_config",
                    "{}: hidden_size ({}) must be a multiple of num_attention_heads ({}) when head_dim is not given",
                    source, c.hidden_size, c.num_attention_heads);
  if (c.is_moe()) {
    check<ShapeError>(c.num_experts_per_tok <= c.num_local_experts, "hf_config",
                      "{}: num_experts_per_tok ({}) exceeds num_local_experts ({})", source, c.num_experts_per_tok,
                      c.num_local_experts);
  }
}

}  // namespace

const std::vector<std::string>& supported_hf_architectures() {
  static const std::vector<std::string> names = {"LlamaForCausalLM", "MixtralForCausalLM"};
  return names;
}

HFConfig parse_hf_config(std::string_view json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    fail("hf_config", "{}: not valid JSON: {}", source, e.what());
  }
  check(root.is_object(), "hf_config", "{}: expected a JSON object, got {}", source, root.type_name());
  const ConfigReader reader(root, source);

  HFConfig c;
  read_architecture(reader, c);
  const bool mixtral = c.architecture == "MixtralForCausalLM";
  c.model_type = reader.string("model_type").value_or(mixtral ? "mixtral" : "llama");

  c.hidden_size = reader.required_positive("hidden_size");
  c.intermediate_size = reader.required_positive("intermediate_size");
  c.num_hidden_layers = reader.required_positive("num_hidden_layers");
  c.num_attention_heads = reader.required_positive("num_attention_heads");
  c.vocab_size = reader.required_positive("vocab_size");
  c.num_key_value_heads = reader.optional_positive("num_key_value_heads", c.num_attention_heads);
  const bool head_dim_given = reader.find("head_dim") != nullptr;
  c.head_dim = reader.optional_positive("head_dim", c.hidden_size / c.num_attention_heads);
  c.max_position_embeddings = reader.optional_positive("max_position_embeddings", mixtral ? 4096 * 32 : 2048);
  c.rms_norm_eps = reader.number("rms_norm_eps", mixtral ? 1e-5 : 1e-6);
  check(c.rms_norm_eps > 0, "hf_config", "{}: key \"rms_norm_eps\" must be positive, got {}", source, c.rms_norm_eps);
  c.rope_theta = read_rope_theta(reader);
  check(c.rope_theta > 0, "hf_config", "{}: key \"rope_theta\" must be positive, got {}", source, c.rope_theta);
  c.tie_word_embeddings = reader.boolean("tie_word_embeddings", false);
  // The decoders have no biases: a checkpoint with them would load and compute without them.
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    check(!reader.boolean(key, false), "hf_config", "{}: key \"{}\" is true: projections with biases are not supported",
          source, key);
  }

  // Newer transformers write "dtype"; older ones "torch_dtype".
  const char* dtype_key = reader.find("torch_dtype") ? "torch_dtype" : "dtype";
  if (auto name = reader.string(dtype_key)) {
    c.torch_dtype = *name;
    c.dtype = dtype_from_torch(*name, dtype_key, source);
  }
  if (mixtral) {
    c.num_local_experts = reader.optional_positive("num_local_experts", 8);
    c.num_experts_per_tok = reader.optional_positive("num_experts_per_tok", 2);
  }
  check_consistency(c, source, head_dim_given);
  return c;
}

HFConfig load_hf_config(const std::string& path) {
  if (is_gguf_path(path)) return gguf_hf_config(io::GgufFile::open(path));
  std::filesystem::path file(path);
  if (std::filesystem::is_directory(file)) file /= "config.json";
  std::ifstream in(file);
  check(in.good(), "hf_config", "{}: cannot open", file.string());
  std::ostringstream text;
  text << in.rdbuf();
  return parse_hf_config(text.str(), file.string());
}

}  // namespace dtensor::models
