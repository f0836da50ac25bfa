// Hugging Face config.json parsing for Llama and Mixtral: real configs, defaults, and every error
// case naming the key.
#include "checkpoint_test_util.hpp"

#include "models/hf_config.hpp"

#include <nlohmann/json.hpp>

using namespace dtensor;
using namespace checkpoint_test;
using Catch::Contains;
using nlohmann::json;

namespace {

// Llama-2-7b-hf's config.json.
json llama_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
    "max_position_embeddings": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0",
    "use_cache": true, "vocab_size": 32000})");
}

// Mixtral-8x7B-v0.1's config.json.
json mixtral_config() {
  return json::parse(R"({
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
    "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "output_router_logits": false, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000})");
}

models::HFConfig parse(const json& config) { return models::parse_hf_config(config.dump(), "test/config.json"); }

template <typename E>
std::string error_with(json config, const char* key, const json& value) {
  if (value.is_discarded()) {
    config.erase(key);
  } else {
    config[key] = value;
  }
  return message_of<E>([&] { parse(config); });
}
const json kRemove = json(json::value_t::discarded);

}  // namespace

TEST_CASE("hf_config: Llama and Mixtral configs as published", "[checkpoint][hf_config]") {
  models::HFConfig llama = parse(llama_config());
  CHECK(llama.architecture == "LlamaForCausalLM");
  CHECK(llama.hidden_size == 4096);
  CHECK(llama.intermediate_size == 11008);
  CHECK(llama.num_hidden_layers == 32);
  CHECK(llama.num_key_value_heads == 32);
  CHECK(llama.head_dim == 128);
  CHECK(llama.vocab_size == 32000);
  CHECK(llama.max_position_embeddings == 4096);
  CHECK(llama.rms_norm_eps == 1e-5);
  CHECK(llama.rope_theta == 10000.0);
  CHECK(llama.dtype == DType::F16);
  CHECK_FALSE(llama.is_moe());

  models::HFConfig mixtral = parse(mixtral_config());
  CHECK(mixtral.model_type == "mixtral");
  CHECK(mixtral.num_key_value_heads == 8);
  CHECK(mixtral.rope_theta == 1e6);
  CHECK(mixtral.dtype == DType::BF16);
  CHECK(mixtral.is_moe());
  CHECK(mixtral.num_local_experts == 8);
  CHECK(mixtral.num_experts_per_tok == 2);
}

TEST_CASE("hf_config: defaults of the optional keys", "[checkpoint][hf_config]") {
  json minimal = {{"architectures", {"LlamaForCausalLM"}},
                  {"hidden_size", 64},
                  {"intermediate_size", 128},
                  {"num_hidden_layers", 2},
                  {"num_attention_heads", 4},
                  {"vocab_size", 100},
                  {"head_dim", nullptr}};
  models::HFConfig c = parse(minimal);
  CHECK(c.num_key_value_heads == 4);
  CHECK(c.head_dim == 16);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.max_position_embeddings == 2048);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.dtype == DType::F32);

  minimal["head_dim"] = 24;  // given: need not divide hidden_size
  minimal["hidden_size"] = 90;
  minimal["tie_word_embeddings"] = true;
  minimal["dtype"] = "bfloat16";  // the newer key
  c = parse(minimal);
  CHECK(c.head_dim == 24);
  CHECK(c.tie_word_embeddings);
  CHECK(c.dtype == DType::BF16);

  minimal["architectures"] = {"MixtralForCausalLM"};
  c = parse(minimal);
  CHECK(c.num_local_experts == 8);
  CHECK(c.num_experts_per_tok == 2);
  CHECK(c.rms_norm_eps == 1e-5);
}

TEST_CASE("hf_config: every error names the key", "[checkpoint][hf_config][errors]") {
  const json llama = llama_config();
  CHECK_THAT(error_with<ValueError>(llama, "hidden_size", kRemove), Contains("hidden_size") && Contains("missing"));
  CHECK_THAT(error_with<ValueError>(llama, "vocab_size", nullptr), Contains("vocab_size"));
  CHECK_THAT(error_with<ValueError>(llama, "hidden_size", "4096"), Contains("hidden_size") && Contains("string"));
  CHECK_THAT(error_with<ValueError>(llama, "num_hidden_layers", 32.5), Contains("num_hidden_layers"));
  CHECK_THAT(error_with<ValueError>(llama, "rope_theta", "big"), Contains("rope_theta"));
  CHECK_THAT(error_with<ValueError>(llama, "tie_word_embeddings", "yes"), Contains("tie_word_embeddings"));
  CHECK_THAT(error_with<ValueError>(llama, "attention_bias", true), Contains("attention_bias"));
  CHECK_THAT(error_with<ValueError>(llama, "mlp_bias", true), Contains("mlp_bias"));
  CHECK_NOTHROW(parse([] {
    json c = llama_config();
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
    return c;
  }()));
  CHECK_THAT(error_with<ValueError>(llama, "num_hidden_layers", 0),
             Contains("num_hidden_layers") && Contains("positive"));
  CHECK_THAT(error_with<ValueError>(llama, "intermediate_size", -1), Contains("intermediate_size"));
  CHECK_THAT(error_with<ValueError>(llama, "rms_norm_eps", 0), Contains("rms_norm_eps"));
  CHECK_THAT(error_with<ValueError>(llama, "architectures", json::array({"GPT2LMHeadModel"})),
             Contains("GPT2LMHeadModel") && Contains("architectures"));
  CHECK_THAT(error_with<ValueError>(llama, "architectures", kRemove), Contains("architectures"));
  CHECK_THAT(error_with<ValueError>(llama, "architectures", json::array()), Contains("architectures"));
  CHECK_THAT(error_with<DTypeError>(llama, "torch_dtype", "float8"), Contains("torch_dtype") && Contains("float8"));
  CHECK_THAT(error_with<ShapeError>(llama, "num_key_value_heads", 5),
             Contains("num_key_value_heads") && Contains("num_attention_heads"));
  CHECK_THAT(error_with<ShapeError>(llama, "hidden_size", 4001), Contains("hidden_size") && Contains("head_dim"));

  const json mixtral = mixtral_config();
  CHECK_THAT(error_with<ShapeError>(mixtral, "num_experts_per_tok", 9),
             Contains("num_experts_per_tok") && Contains("num_local_experts"));
  CHECK_THAT(error_with<ValueError>(mixtral, "num_local_experts", 0), Contains("num_local_experts"));

  CHECK_THAT(message_of<ValueError>([] { models::parse_hf_config("{\"hidden_size\": ", "bad/config.json"); }),
             Contains("bad/config.json") && Contains("JSON"));
  CHECK_THROWS_AS(models::parse_hf_config("[1]"), ValueError);
}

TEST_CASE("hf_config: rotary parameters in the old and the new (rope_parameters) layout", "[checkpoint][hf_config]") {
  // transformers >= 4.57 moves rope_theta into rope_parameters.
  json v5 = llama_config();
  v5.erase("rope_scaling");
  v5["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "default"}};
  CHECK(parse(v5).rope_theta == 500000.0);
  json plain_scaling = llama_config();
  plain_scaling["rope_theta"] = 20000.0;
  plain_scaling["rope_scaling"] = {{"rope_type", "default"}};
  CHECK(parse(plain_scaling).rope_theta == 20000.0);

  // Scaled rotary embeddings are not built: refused, naming the key.
  json llama3 = v5;
  llama3["rope_parameters"]["rope_type"] = "llama3";
  CHECK_THAT(message_of<ValueError>([&] { parse(llama3); }),
             Contains("rope_parameters.rope_type") && Contains("llama3"));
  CHECK_THAT(error_with<ValueError>(llama_config(), "rope_scaling", {{"type", "linear"}, {"factor", 2.0}}),
             Contains("rope_scaling.type") && Contains("linear"));
  CHECK_THAT(error_with<ValueError>(llama_config(), "rope_scaling", {{"factor", 2.0}}), Contains("rope_scaling"));
  CHECK_THAT(error_with<ValueError>(v5, "rope_parameters", 3), Contains("rope_parameters"));
}

TEST_CASE("hf_config: loading from a directory or a file", "[checkpoint][hf_config]") {
  TempDir dir;
  write_file(dir.file("config.json"), mixtral_config().dump(2));
  CHECK(models::load_hf_config(dir.path().string()).num_local_experts == 8);
  CHECK(models::load_hf_config(dir.file("config.json")).hidden_size == 4096);
  CHECK_THAT(message_of<ValueError>([&] { models::load_hf_config(dir.file("nothing.json")); }),
             Contains("nothing.json"));
}
