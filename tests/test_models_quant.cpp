// Llama with quantized weights (models/quant.hpp, nn/quant.hpp) sharded over the world (np 1..4)
// under the auto and sequence-parallel plans, against the same checkpoint quantized unsharded:
// every rank's blocks hold exactly the unsharded matrix's quantized bytes of its rows / columns,
// and prompt logits agree to f32 rounding with the same greedy ids. The quantized model against
// the f32 one within a bound per format, and the errors: a column shard boundary inside a block,
// an unknown format name, training a quantized model.
//
// The model: hidden 256 (4 heads of 64, 2 KV heads), intermediate 768, vocab 37 (uneven over the
// ranks), so that every split of np 1..4 falls on 64-column boundaries (heads 2, 1, 1 at np 3:
// o_proj splits at 128 and 192; down_proj's chunks of 768 / np).
#include "test_models_util.hpp"

#include "skip.hpp"

#include "models/quant.hpp"
#include "nn/layers.hpp"
#include "tensor/ops.hpp"

#include <typeinfo>

using namespace dtensor;
using models_test::SharedDir;
using models_test::TinySpec;
using models_test::world_line;

namespace {

const std::vector<int64_t> kPrompt = {3, 17, 0, 36, 5, 22, 9, 11, 30};
constexpr int64_t kNewTokens = 4;

TinySpec quant_spec(bool tie) {
  TinySpec spec;
  spec.hidden = 256;
  spec.heads = 4;
  spec.kv_heads = 2;
  spec.intermediate = 768;
  spec.tie = tie;
  spec.seed = tie ? 5 : 4;
  return spec;
}

// `run` throws an E whose message holds every one of `parts`.
template <typename E, typename F>
void check_throws(F run, const std::vector<std::string>& parts) {
  try {
    run();
    FAIL("no " << typeid(E).name() << " thrown");
  } catch (const E& e) {
    for (const std::string& part : parts) CHECK_THAT(std::string(e.what()), Catch::Matchers::Contains(part));
  }
}

const std::vector<std::string> kFormats = {"int8", "q8_0", "q4_0", "q4_1", "nf4"};

std::vector<std::pair<std::string, nn::TpPlan>> plans_for(const models::HFConfig& config) {
  return {{"auto", models::auto_tp_plan(config)}, {"sequence parallel", models::sequence_parallel_tp_plan(config)}};
}

const QuantizedMatrix& quantized(models::CausalLM& model, const std::string& linear) {
  auto* module = dynamic_cast<nn::Linear*>(model.find(linear));
  REQUIRE(module != nullptr);
  REQUIRE(module->quantized_weight() != nullptr);
  CHECK_FALSE(module->parameter("weight").defined());  // no f32 copy kept
  return module->quantized_weight()->local;
}

bool same_bytes(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols() || a.format() != b.format()) return false;
  if (!equal(a.data(), b.data())) return false;
  return !a.scales().defined() || equal(a.scales(), b.scales());
}

// This rank's block of gate_proj (rows) and down_proj (columns), chunks of 768 / np, against the
// unsharded matrices narrowed to the same rows / columns.
void check_blocks(models::CausalLM& sharded, models::CausalLM& whole) {
  const int64_t inter = 768, chunk = (inter + world().size() - 1) / world().size();
  const int64_t first = std::min(inter, chunk * world().rank()), count = std::min(inter, first + chunk) - first;
  const std::string layer = "model.layers.1.mlp.";
  CHECK(same_bytes(quantized(sharded, layer + "gate_proj"),
                   quantized(whole, layer + "gate_proj").narrow_rows(first, count)));
  CHECK(same_bytes(quantized(sharded, layer + "down_proj"),
                   quantized(whole, layer + "down_proj").narrow_cols(first, count)));
}

double f32_sum_bound(const Tensor& logits) { return std::max(1e-4, 1e-5 * amax(abs(logits)).item<double>()); }

// The kernels with f32 activations: sharded and unsharded differ only by the order of f32 sums.
void check_sharded_against_unsharded(const TinySpec& spec) {
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  for (const std::string& format : kFormats) {
    nn::QuantizeOptions options = models::quantize_options_from_name(format);
    options.kernel.quantize_activations = false;
    auto whole = models::load_unsharded_quantized(dir.str(), DType::F32, options);
    const models::Generation expected = models::generate_greedy(*whole, kPrompt, kNewTokens);
    for (const auto& [plan_name, plan] : plans_for(config)) {
      INFO(format << ", plan " << plan_name << ", tie " << spec.tie << ", np " << world().size());
      auto sharded = models::load_sharded_quantized(dir.str(), world_line(), plan, DType::F32, options);
      check_blocks(*sharded, *whole);
      const models::Generation got = models::generate_greedy(*sharded, kPrompt, kNewTokens);
      CHECK(max_abs_diff(got.prompt_logits, expected.prompt_logits) <= f32_sum_bound(expected.prompt_logits));
      CHECK(got.new_ids == expected.new_ids);
    }
  }
}

// The kernels as --quantize runs them: q4_0 / q4_1 round activations to q8_0 blocks, which the
// sharded model's f32 sums may round the other way (models::quantizes_activations). Within 5% of
// the largest logit, a quantization step's worth.
TEST_CASE("quantized Llama with rounded activations sharded against unsharded", "[models][quant]") {
  SharedDir dir;
  models_test::write_checkpoint(dir, quant_spec(/*tie=*/false));
  const models::HFConfig config = models::load_hf_config(dir.str());
  for (const std::string format : {"q4_0", "q4_1", "int8-outlier"}) {
    INFO(format << ", np " << world().size());
    const Tensor expected = models::load_unsharded_quantized(dir.str(), DType::F32, format)->forward_tokens(kPrompt);
    auto sharded =
        models::load_sharded_quantized(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32, format);
    CHECK(max_abs_diff(sharded->forward_tokens(kPrompt), expected) <= 0.05 * amax(abs(expected)).item<double>());
  }
}

}  // namespace

TEST_CASE("quantized Llama sharded matches the unsharded quantized model", "[models][quant]") {
  check_sharded_against_unsharded(quant_spec(/*tie=*/false));
}

TEST_CASE("quantized Llama with tied embeddings shares one quantized table", "[models][quant]") {
  const TinySpec spec = quant_spec(/*tie=*/true);
  check_sharded_against_unsharded(spec);
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto model =
      models::load_sharded_quantized(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32, "q4_0");
  auto* embedding = dynamic_cast<nn::Embedding*>(model->find("model.embed_tokens"));
  auto* head = dynamic_cast<nn::Linear*>(model->find("lm_head"));
  REQUIRE(embedding != nullptr);
  REQUIRE(head != nullptr);
  CHECK(embedding->quantized_weight() != nullptr);
  CHECK(embedding->quantized_weight() == head->quantized_weight());
  // Weights held: the table once, the other matrices, and the f32 norms.
  const nn::LocalWeights held = nn::local_weights(*model);
  CHECK(held.bytes < held.elements);  // q4_0: 18 bytes per 32 weights, far below one byte each
}

// The distance of the quantized model's prompt logits from the f32 model's, relative to the
// largest f32 logit. A weight's rounding error is at most half a step: int8 / q8_0 steps are
// absmax / 127 (< 0.4% of a block's absmax), 4-bit ones absmax / 7.5 (q4_0) or (max - min) / 15
// (q4_1). NF4's codes are spaced for normally distributed weights; these uniform ones often fall
// in its widest gap, 0.72 to 1 (half of it 0.14 absmax). Through two layers these errors add up
// like noise: ~1% of the largest logit for 8 bits, 12-14% for q4_0 / q4_1, 24% for nf4 here (2%
// for int8-outlier, whose activations are rounded to 8 bits too); the bounds allow about twice.
TEST_CASE("quantized Llama logits against the f32 model", "[models][quant]") {
  const TinySpec spec = quant_spec(/*tie=*/false);
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  auto f32 = models::load_unsharded(dir.str(), DType::F32);
  const Tensor reference = f32->forward_tokens(kPrompt);
  const double largest = amax(abs(reference)).item<double>();
  const std::vector<std::pair<std::string, double>> bounds = {{"int8", 0.03}, {"int8-outlier", 0.05}, {"q8_0", 0.03},
                                                              {"q4_0", 0.25}, {"q4_1", 0.3},          {"nf4", 0.45}};
  for (const auto& [format, bound] : bounds) {
    auto model = models::load_unsharded_quantized(dir.str(), DType::F32, format);
    const double distance = max_abs_diff(model->forward_tokens(kPrompt), reference) / largest;
    INFO(format << ": max |quantized - f32| / max |f32| = " << distance);
    CHECK(distance <= bound);
    CHECK(distance > 0);  // the weights did change
  }
}

TEST_CASE("a column shard boundary inside a quantization block is a ShapeError naming the module", "[models][quant]") {
  if (world().size() == 1) SKIP_TEST("one rank splits no columns");
  TinySpec spec = quant_spec(/*tie=*/false);
  spec.intermediate = 32 * world().size() + 16;  // down_proj's chunks end inside a 32-column block
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  const int64_t chunk = (spec.intermediate + world().size() - 1) / world().size();
  const std::string boundary = fmt::format("boundary at input column {} splits a q4_0 block of 32", chunk);
  for (const auto& [plan_name, plan] : plans_for(config)) {
    INFO(plan_name);
    check_throws<ShapeError>([&] { models::load_sharded_quantized(dir.str(), world_line(), plan, DType::F32, "q4_0"); },
                             {"model.layers.0.mlp.down_proj", boundary});
  }
  // int8's block is a whole row: any column split is on its boundaries.
  CHECK_NOTHROW(
      models::load_sharded_quantized(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32, "int8"));
}

TEST_CASE("an unknown quantization name is a ValueError naming --quantize", "[models][quant]") {
  check_throws<ValueError>([] { models::quantize_options_from_name("q3_k"); }, {"--quantize", "'q3_k'", "q4_0"});
}

TEST_CASE("training a quantized model is a ValueError", "[models][quant]") {
  SharedDir dir;
  models_test::write_checkpoint(dir, quant_spec(/*tie=*/false));
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto model = models::load_sharded_quantized(dir.str(), world_line(), models::auto_tp_plan(config), DType::F32, "nf4");
  const Tensor ids = Tensor::from_vector<int64_t>({1, 2, 3, 4}, {1, 4});
  check_throws<ValueError>([&] { model->training_logits(ids); }, {"inference only"});
  model->requires_grad_();  // the norms take gradients; the inputs of the quantized Linears then want one
  check_throws<ValueError>([&] { model->forward_tokens({1, 2}); }, {"self_attn.q_proj", "inference only"});
}
