// Bad-input rows: config.json fields and tp_plan files (malformed JSON, unknown strategies,
// strategies on modules that cannot take them, plans on meshes they cannot use).
#include "bad_input_rows.hpp"

#include "collectives/runtime.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "nn/tp_plan.hpp"
#include "program_flags.hpp"
#include "tools/random_checkpoint.hpp"

#include <nlohmann/json.hpp>

using namespace dtensor;
using nlohmann::json;
namespace fs = std::filesystem;

namespace bad_input {

namespace {

json llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 64},
          {"intermediate_size", 96},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"vocab_size", 100}};
}

// A row parsing the Llama config with `key` set to `value` (removed when value is null and
// `remove` is set); the message must name the key.
template <typename E>
Row config_row(const std::string& what, const std::string& key, json value, bool remove = false,
               const std::string& argument = "") {
  json config = llama_config();
  if (remove) {
    config.erase(key);
  } else {
    config[key] = std::move(value);
  }
  return row<E>("config.json: " + what, argument.empty() ? "\"" + key + "\"" : argument,
                [text = config.dump()] { models::parse_hf_config(text, "bad/config.json"); });
}

Row config_text_row(const std::string& what, const std::string& text) {
  return row<ValueError>("config.json: " + what, "bad/config.json",
                         [text] { models::parse_hf_config(text, "bad/config.json"); });
}

}  // namespace

std::vector<Row> config_rows() {
  json mixtral = llama_config();
  mixtral["architectures"] = {"MixtralForCausalLM"};
  mixtral["num_local_experts"] = 2;
  mixtral["num_experts_per_tok"] = 3;
  json unscaled_rope = llama_config();
  unscaled_rope["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  return {
      config_text_row("not JSON", "{\"hidden_size\": "),
      config_text_row("a JSON array", "[1, 2]"),
      config_text_row("empty", ""),
      config_row<ValueError>("hidden_size missing", "hidden_size", nullptr, true),
      config_row<ValueError>("vocab_size missing", "vocab_size", nullptr, true),
      config_row<ValueError>("architectures missing", "architectures", nullptr, true),
      config_row<ValueError>("hidden_size a string", "hidden_size", "64"),
      config_row<ValueError>("hidden_size zero", "hidden_size", 0),
      config_row<ValueError>("hidden_size negative", "hidden_size", -64),
      config_row<ValueError>("vocab_size fractional", "vocab_size", 100.5),
      config_row<ValueError>("num_hidden_layers zero", "num_hidden_layers", 0),
      config_row<ValueError>("intermediate_size negative", "intermediate_size", -1),
      config_row<ValueError>("num_attention_heads zero", "num_attention_heads", 0),
      config_row<ShapeError>("heads not a multiple of kv heads", "num_key_value_heads", 3, false,
                             "num_key_value_heads (3)"),
      config_row<ShapeError>("hidden not a multiple of heads", "hidden_size", 66, false, "hidden_size (66)"),
      config_row<ValueError>("head_dim zero", "head_dim", 0),
      config_row<ValueError>("max_position_embeddings zero", "max_position_embeddings", 0),
      config_row<ValueError>("unknown architecture", "architectures", json::array({"GPT2LMHeadModel"})),
      config_row<ValueError>("no architecture listed", "architectures", json::array()),
      config_row<ValueError>("architectures a string", "architectures", "LlamaForCausalLM"),
      config_row<DTypeError>("torch_dtype int8", "torch_dtype", "int8"),
      config_row<ValueError>("rms_norm_eps zero", "rms_norm_eps", 0.0),
      config_row<ValueError>("rope_theta negative", "rope_theta", -1.0),
      config_row<ValueError>("tie_word_embeddings a number", "tie_word_embeddings", 1),
      config_row<ValueError>("attention_bias true", "attention_bias", true),
      config_row<ValueError>("mlp_bias true", "mlp_bias", true),
      row<ValueError>("config.json: rope_scaling linear", "rope_scaling",
                      [text = unscaled_rope.dump()] { models::parse_hf_config(text, "bad/config.json"); }),
      row<ShapeError>("config.json: more experts per token than experts", "num_experts_per_tok",
                      [text = mixtral.dump()] { models::parse_hf_config(text, "bad/config.json"); }),
      row<ValueError>("config.json: missing file", "absent-model",
                      [] { models::load_hf_config((scratch_dir() / "absent-model").string()); }),
  };
}

namespace {}  // namespace

std::string tiny_llama_dir() {
  static const std::string dir = [] {
    const fs::path path = scratch_dir() / "tiny-llama";
    tools::RandomCheckpointSpec spec;
    spec.hidden = 32;
    spec.intermediate = 48;
    spec.heads = 4;
    spec.kv_heads = 2;
    spec.vocab = 40;
    tools::write_random_checkpoint(path.string(), spec);
    return path.string();
  }();
  return dir;
}

namespace {

Row plan_row(const std::string& what, const std::string& plan_json, const std::string& argument,
             const DeviceMesh& mesh) {
  return row<ValueError>("tp_plan: " + what, argument, [plan_json, mesh, dir = tiny_llama_dir()] {
    models::load_sharded(dir, mesh, nn::TpPlan::from_json(plan_json), DType::F32);
  });
}

}  // namespace

std::vector<Row> plan_rows() {
  const int w = world().size();
  const DeviceMesh line = DeviceMesh::from_world({w}, {"tp"});
  const DeviceMesh unnamed_grid = DeviceMesh::from_world({w, 1});
  return {
      row<ValueError>("tp_plan: not JSON", "JSON", [] { nn::TpPlan::from_json("{\"lm_head\": "); }),
      row<ValueError>("tp_plan: a JSON array", "JSON object", [] { nn::TpPlan::from_json("[\"colwise\"]"); }),
      row<ValueError>("tp_plan: strategy not a string", "'lm_head'", [] { nn::TpPlan::from_json("{\"lm_head\": 3}"); }),
      row<ValueError>("tp_plan: a pattern twice", "'lm_head'",
                      [] { nn::TpPlan::from_json(R"({"lm_head": "colwise", "lm_head": "rowwise"})"); }),
      row<ValueError>("tp_plan: empty pattern", "pattern", [] { nn::TpPlan::from_json(R"({"": "colwise"})"); }),
      row<ValueError>("tp_plan: missing file", "absent-plan.json",
                      [] { nn::TpPlan::from_json_file((scratch_dir() / "absent-plan.json").string()); }),
      plan_row("unknown strategy", R"({"model.layers.*.mlp.up_proj": "diagonal"})", "diagonal", line),
      plan_row("colwise on a norm", R"({"model.norm": "colwise"})", "model.norm", line),
      plan_row("rowwise on the embedding's norm", R"({"model.layers.*.input_layernorm": "rowwise"})", "input_layernorm",
               line),
      plan_row("colwise on a container", R"({"model.layers.*.mlp": "colwise"})", "mlp'", line),
      plan_row("packed strategy on a norm", R"({"model.norm": "packed_colwise"})", "model.norm", line),
      plan_row("experts strategy on a Linear", R"({"model.layers.*.mlp.up_proj": "moe_tp_experts"})", "up_proj", line),
      plan_row("q split differently from k", R"({"model.layers.*.self_attn.q_proj": "colwise"})", "self_attn", line),
      row<ValueError>("tp_plan: a --plan rule naming no module", "model.layers.*.mlp.fc9",
                      [line, dir = tiny_llama_dir()] {
                        nn::PlanReport report;
                        models::load_sharded(dir, line,
                                             nn::TpPlan::from_json(R"({"model.layers.*.mlp.fc9": "colwise"})"),
                                             DType::F32, &report);
                        programs::check_plan_matched(report, "plan.json", "generate");
                      }),
      row<MeshError>("tp_plan: 2-D mesh without a tp dim", "tp",
                     [unnamed_grid, dir = tiny_llama_dir()] {
                       models::load_sharded(dir, unnamed_grid, nn::TpPlan{}, DType::F32);
                     }),
  };
}

}  // namespace bad_input
