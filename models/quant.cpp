#include "models/quant.hpp"

#include "models/hf_config.hpp"
#include "tensor/host_block_cache.hpp"

#include <fstream>
#include <map>

namespace dtensor::models {

namespace {

// bitsandbytes' default LLM.int8() threshold (BitsAndBytesConfig.llm_int8_threshold).
constexpr double kInt8OutlierThreshold = 6.0;

const std::map<std::string, nn::QuantizeOptions>& named_options() {
  static const std::map<std::string, nn::QuantizeOptions> names = {
      {"int8", {QuantFormat::Int8, {}}}, {"int8-outlier", {QuantFormat::Int8, {kInt8OutlierThreshold}}},
      {"q8_0", {QuantFormat::Q8_0, {}}}, {"q4_0", {QuantFormat::Q4_0, {}}},
      {"q4_1", {QuantFormat::Q4_1, {}}}, {"nf4", {QuantFormat::NF4, {}}},
  };
  return names;
}

int64_t status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1)) * 1024;  // "VmRSS:  1234 kB"
  }
  return 0;
}

}  // namespace

std::string quantize_names() { return "int8, int8-outlier, q8_0, q4_0, q4_1, nf4"; }

nn::QuantizeOptions quantize_options_from_name(const std::string& name, const char* flag) {
  const auto& names = named_options();
  const auto it = names.find(name);
  check<ValueError>(it != names.end(), flag, "unknown quantization '{}'; expected one of {}", name, quantize_names());
  return it->second;
}

void set_quantization(nn::Module& model, const nn::QuantizeOptions& options) {
  for (auto& [name, module] : model.named_modules()) {
    if (auto* slot = dynamic_cast<nn::QuantizableWeight*>(module)) slot->set_quantization(options);
  }
}

std::shared_ptr<CausalLM> load_sharded_quantized(const std::string& dir, const DeviceMesh& tp_mesh,
                                                 const nn::TpPlan& plan, DType dtype,
                                                 const nn::QuantizeOptions& options, nn::PlanReport* report) {
  const HFConfig config = load_hf_config(dir);
  auto model = std::make_shared<CausalLM>(config, dtype);
  set_quantization(*model, options);
  const io::Checkpoint checkpoint = io::Checkpoint::open(dir);
  nn::PlanReport applied = nn::apply_tp_plan(*model, plan, tp_mesh, checkpoint_sources(checkpoint, config));
  model->tie_word_embeddings();
  release_cached_host_blocks();  // the f32 blocks read and quantized
  if (report != nullptr) *report = std::move(applied);
  return model;
}

std::shared_ptr<CausalLM> load_unsharded_quantized(const std::string& dir, DType dtype,
                                                   const nn::QuantizeOptions& options) {
  const HFConfig config = load_hf_config(dir);
  auto model = std::make_shared<CausalLM>(config, dtype);
  set_quantization(*model, options);
  nn::load_unsharded(*model, checkpoint_sources(io::Checkpoint::open(dir), config));
  model->tie_word_embeddings();
  release_cached_host_blocks();
  return model;
}

ResidentMemory resident_memory() { return {status_bytes("VmRSS"), status_bytes("VmHWM")}; }

}  // namespace dtensor::models
