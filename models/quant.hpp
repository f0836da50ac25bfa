// Causal LMs with quantized weights (`generate --quantize`), for inference: every Linear
// (attention and MLP projections, lm_head) and the embedding table hold this rank's block of
// their weight quantized as it loads (nn/quant.hpp); norms stay in the model's dtype. A tied
// embedding and lm_head share one quantized table when the plan splits them alike (the auto plan
// splits both by vocab rows).
//
//   auto model = models::load_sharded_quantized("smollm2/", tp, models::auto_tp_plan(config), DType::F32, "q4_0");
//   models::Generation g = models::generate_greedy(*model, prompt, 32);
#pragma once

#include "models/causal_lm.hpp"
#include "nn/quant.hpp"

#include <functional>
#include <memory>
#include <string>

namespace dtensor::models {

// The names --quantize takes: int8 (weight-only, per output channel), int8-outlier (LLM.int8()
// with bitsandbytes' default outlier threshold 6), q8_0, q4_0, q4_1, nf4, and gguf (a .gguf
// model's own q8_0 / q4_0 / q4_1 blocks as shipped, never requantized).
std::string quantize_names();
// ValueError naming `flag` and listing the names for one that is not among them.
void check_quantize_name(const std::string& name, const char* flag = "--quantize");
// The options of a name other than gguf (ValueError naming `flag` otherwise).
nn::QuantizeOptions quantize_options_from_name(const std::string& name, const char* flag = "--quantize");

// Marks every Linear and Embedding of `model` for quantization at load.
void set_quantization(nn::Module& model, const nn::QuantizeOptions& options);

// load_sharded / load_unsharded (a checkpoint directory or a .gguf file) with every Linear and
// the embedding quantized at load as `quantize` names. ShapeError naming the module when a column
// shard boundary splits a block; ValueError naming --quantize for gguf with a model that is not a
// .gguf file, or a weight the file holds in a type other than q8_0 / q4_0 / q4_1.
std::shared_ptr<CausalLM> load_sharded_quantized(const std::string& path, const DeviceMesh& tp_mesh,
                                                 const nn::TpPlan& plan, DType dtype, const std::string& quantize,
                                                 nn::PlanReport* report = nullptr);
std::shared_ptr<CausalLM> load_unsharded_quantized(const std::string& path, DType dtype, const std::string& quantize);
// The same with options made by hand (kernel options: f32 activations for q4_0 / q4_1).
std::shared_ptr<CausalLM> load_sharded_quantized(const std::string& path, const DeviceMesh& tp_mesh,
                                                 const nn::TpPlan& plan, DType dtype,
                                                 const nn::QuantizeOptions& options);
std::shared_ptr<CausalLM> load_unsharded_quantized(const std::string& path, DType dtype,
                                                   const nn::QuantizeOptions& options);

// Whether the named quantization's kernels also round the activations (int8-outlier: int8 per
// row; q4_0, q4_1 and gguf's q4_1: q8_0 blocks, as llama.cpp). Each rank rounds its own input, so
// a sharded model's f32 sums, ordered differently, can round an activation the other way than
// the unsharded model: its logits then differ by quantization steps, not f32 rounding.
bool quantizes_activations(const std::string& name);

// This process's resident memory from /proc/self/status, in bytes: VmRSS now and its peak VmHWM.
struct ResidentMemory {
  int64_t rss = 0;
  int64_t peak = 0;
};
ResidentMemory resident_memory();

}  // namespace dtensor::models
