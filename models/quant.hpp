// Causal LMs with quantized weights (`generate --quantize`), for inference: every Linear
// (attention and MLP projections, lm_head) and the embedding table hold this rank's block of
// their weight quantized as it loads (nn/quant.hpp); norms stay in the model's dtype. A tied
// embedding and lm_head share one quantized table when the plan splits them alike (the auto plan
// splits both by vocab rows).
//
//   auto model = models::load_sharded_quantized("smollm2/", tp, models::auto_tp_plan(config), DType::F32,
//                                               models::quantize_options_from_name("q4_0"));
//   models::Generation g = models::generate_greedy(*model, prompt, 32);
#pragma once

#include "models/causal_lm.hpp"
#include "nn/quant.hpp"

#include <memory>
#include <string>

namespace dtensor::models {

// The names --quantize takes: int8 (weight-only, per output channel), int8-outlier (LLM.int8()
// with bitsandbytes' default outlier threshold 6), q8_0, q4_0, q4_1, nf4. ValueError naming
// `flag` and listing the names otherwise.
nn::QuantizeOptions quantize_options_from_name(const std::string& name, const char* flag = "--quantize");
// "int8, int8-outlier, q8_0, q4_0, q4_1, nf4".
std::string quantize_names();

// Marks every Linear and Embedding of `model` for quantization at load.
void set_quantization(nn::Module& model, const nn::QuantizeOptions& options);

// load_sharded / load_unsharded with every weight quantized at load (models/causal_lm.hpp).
// ShapeError naming the module when a column shard boundary splits a block of the format.
std::shared_ptr<CausalLM> load_sharded_quantized(const std::string& dir, const DeviceMesh& tp_mesh,
                                                 const nn::TpPlan& plan, DType dtype,
                                                 const nn::QuantizeOptions& options, nn::PlanReport* report = nullptr);
std::shared_ptr<CausalLM> load_unsharded_quantized(const std::string& dir, DType dtype,
                                                   const nn::QuantizeOptions& options);

// This process's resident memory from /proc/self/status, in bytes: VmRSS now and its peak VmHWM.
struct ResidentMemory {
  int64_t rss = 0;
  int64_t peak = 0;
};
ResidentMemory resident_memory();

}  // namespace dtensor::models
