// Llama GGUF files as models (models/gguf_model.hpp): a tiny random Llama is written twice, as a
// Hugging Face checkpoint and as the GGUF convert_hf_to_gguf would write (llama.* metadata, blk.N
// names, q/k rows permuted per head for llama.cpp's rotary layout, f32 tensors), and the GGUF must
// load (unsharded and sharded) to the same logits. Plus the config mapping and its errors.
#include "checkpoint_test_util.hpp"
#include "gguf_test_writer.hpp"
#include "test_models_util.hpp"

#include "io/gguf.hpp"
#include "models/gguf_model.hpp"
#include "tensor/ops.hpp"

using namespace models_test;
using namespace gguf_test;
using Catch::Contains;

namespace {

const std::vector<int64_t> kPrompt = {3, 1, 4, 1, 5, 9, 2, 6};

std::string raw_f32(const Tensor& t) {
  const Tensor dense = t.to(DType::F32).contiguous();
  return std::string(static_cast<const char*>(dense.data_ptr()), size_t(dense.numel()) * 4);
}

// convert_hf_to_gguf's LlamaModel.permute: w.reshape(heads, 2, rows / heads / 2, in).swapaxes(1, 2),
// i.e. row h * d + j * 2 + t of the result is row h * d + t * d / 2 + j of w.
Tensor llama_cpp_permute(const Tensor& w, int64_t heads) {
  const int64_t d = w.size(0) / heads, in = w.size(1);
  return w.reshape({heads, 2, d / 2, in}).transpose(1, 2).contiguous().reshape({heads * d, in});
}

// The GGUF tensor names of Hugging Face's Llama names (llama.cpp's tensor map).
std::string gguf_name(const std::string& hf) {
  static const std::map<std::string, std::string> kLayer = {
      {"input_layernorm.weight", "attn_norm.weight"},    {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},       {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const size_t dot = hf.find('.', std::string("model.layers.").size());
  const std::string layer = hf.substr(13, dot - 13);
  return "blk." + layer + "." + kLayer.at(hf.substr(dot + 1));
}

GgufWriter llama_gguf(const TinySpec& s, bool vocab_from_tokens) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", uint32_t(s.layers));
  w.add_u32("llama.context_length", 256);
  w.add_u32("llama.embedding_length", uint32_t(s.hidden));
  w.add_u32("llama.feed_forward_length", uint32_t(s.intermediate));
  w.add_u32("llama.attention.head_count", uint32_t(s.heads));
  w.add_u32("llama.attention.head_count_kv", uint32_t(s.kv_heads));
  w.add_f32("llama.rope.freq_base", 1000.0f);
  w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.add_u32("llama.rope.dimension_count", uint32_t(s.dim()));
  if (vocab_from_tokens) {
    std::vector<std::string> tokens;
    for (int64_t i = 0; i < s.vocab; ++i) tokens.push_back(fmt::format("t{}", i));
    w.add_string_array("tokenizer.ggml.tokens", tokens);
  } else {
    w.add_u32("llama.vocab_size", uint32_t(s.vocab));
  }
  for (const auto& [name, tensor] : tiny_weights(s)) {
    Tensor stored = tensor;
    if (name.ends_with("q_proj.weight")) stored = llama_cpp_permute(tensor, s.heads);
    if (name.ends_with("k_proj.weight")) stored = llama_cpp_permute(tensor, s.kv_heads);
    w.add_tensor(gguf_name(name), io::GgmlType::F32, tensor.shape(), raw_f32(stored));
  }
  return w;
}

std::string write_gguf(const SharedDir& dir, const GgufWriter& w, const std::string& name = "model.gguf") {
  const std::string path = dir.str() + "/" + name;
  if (world().rank() == 0) {
    std::ofstream out(path, std::ios::binary);
    const std::string bytes = w.bytes();
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  world().barrier();
  return path;
}

}  // namespace

TEST_CASE("gguf model: a Llama GGUF loads to the logits of the same Hugging Face checkpoint", "[gguf][models]") {
  for (bool tie : {false, true}) {
    INFO("tie_word_embeddings " << tie);
    TinySpec spec = tied_llama();
    spec.tie = tie;
    SharedDir dir;
    write_checkpoint(dir, spec);
    const std::string gguf = write_gguf(dir, llama_gguf(spec, tie));

    const models::HFConfig config = models::load_hf_config(gguf);
    CHECK(config.architecture == "LlamaForCausalLM");
    CHECK(config.num_hidden_layers == spec.layers);
    CHECK(config.num_attention_heads == spec.heads);
    CHECK(config.num_key_value_heads == spec.kv_heads);
    CHECK(config.head_dim == spec.dim());
    CHECK(config.vocab_size == spec.vocab);
    CHECK(config.max_position_embeddings == 256);
    CHECK(config.rope_theta == 1000.0);
    CHECK(config.tie_word_embeddings == tie);

    const Tensor expected = models::load_unsharded(dir.str(), DType::F32)->forward_tokens(kPrompt);
    CHECK(max_abs_diff(models::load_unsharded(gguf, DType::F32)->forward_tokens(kPrompt), expected) <= 1e-5);
    auto sharded = models::load_sharded(gguf, world_line(), models::auto_tp_plan(config), DType::F32);
    CHECK(max_abs_diff(sharded->forward_tokens(kPrompt), expected) <= 1e-4);
  }
}

TEST_CASE("gguf model: unsupported or incomplete metadata names the key", "[gguf][models][errors]") {
  SharedDir dir;
  const TinySpec spec = tied_llama();
  GgufWriter w = llama_gguf(spec, false);
  const std::string good = write_gguf(dir, w, "good.gguf");
  const models::HFConfig config = models::load_hf_config(good);
  CHECK(models::gguf_tensor_name("model.layers.1.mlp.down_proj.weight", config) == "blk.1.ffn_down.weight");
  CHECK(models::gguf_tensor_name("lm_head.weight", config) == "token_embd.weight");
  CHECK_THAT(checkpoint_test::message_of<ValueError>(
                 [&] { models::gguf_tensor_name("model.layers.x.mlp.up_proj.weight", config); }),
             Contains("'model.layers.x.mlp.up_proj.weight'"));

  GgufWriter mamba;
  mamba.add_string("general.architecture", "mamba");
  const std::string mamba_path = write_gguf(dir, mamba, "mamba.gguf");
  CHECK_THAT(checkpoint_test::message_of<ValueError>([&] { models::load_hf_config(mamba_path); }),
             Contains("general.architecture") && Contains("mamba"));

  GgufWriter missing;
  missing.add_string("general.architecture", "llama");
  missing.add_u32("llama.embedding_length", 24);
  const std::string missing_path = write_gguf(dir, missing, "missing.gguf");
  CHECK_THAT(checkpoint_test::message_of<ValueError>([&] { models::load_hf_config(missing_path); }),
             Contains("llama.attention.head_count"));

  GgufWriter zero;
  zero.add_string("general.architecture", "llama");
  zero.add_u32("llama.embedding_length", 0);
  CHECK_THAT(
      checkpoint_test::message_of<ValueError>([&] { models::load_hf_config(write_gguf(dir, zero, "zero.gguf")); }),
      Contains("'llama.embedding_length' = 0") && Contains("positive"));
  GgufWriter rotary = llama_gguf(spec, false);
  rotary.add_string("llama.rope.scaling.type", "yarn");
  CHECK_THAT(
      checkpoint_test::message_of<ValueError>([&] { models::load_hf_config(write_gguf(dir, rotary, "yarn.gguf")); }),
      Contains("llama.rope.scaling.type"));
}
