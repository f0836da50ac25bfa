#include "models/quant.hpp"

#include "models/gguf_model.hpp"
#include "models/hf_config.hpp"
#include "tensor/host_block_cache.hpp"
#include "tensor/ops.hpp"

#include <fstream>
#include <map>

namespace dtensor::models {

namespace {

constexpr const char* kGguf = "gguf";

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

// The box of each 2-D parameter last read through sources wrapped by noting_boxes.
struct Box {
  Shape offset, sizes;
};
using Boxes = std::map<std::string, Box>;

nn::SourceLookup noting_boxes(nn::SourceLookup inner, std::shared_ptr<Boxes> boxes) {
  return [inner = std::move(inner), boxes](const std::string& name) {
    io::TensorSource source = inner(name);
    if (source.shape.size() != 2) return source;
    auto read = [read_box = source.read_box, boxes, name](const Shape& offset, const Tensor& out) {
      (*boxes)[name] = {offset, out.shape()};
      read_box(offset, out);
    };
    return io::TensorSource{source.dtype, source.shape, read};
  };
}

QuantFormat shipped_format(const io::GgufTensorInfo& info, const std::string& path) {
  switch (info.type) {
    case io::GgmlType::Q8_0:
      return QuantFormat::Q8_0;
    case io::GgmlType::Q4_0:
      return QuantFormat::Q4_0;
    case io::GgmlType::Q4_1:
      return QuantFormat::Q4_1;
    default:
      fail<ValueError>("--quantize", "gguf: {} holds '{}' as {}; the quantized kernels read q8_0, q4_0 and q4_1", path,
                       info.name, io::ggml_type_name(info.type));
  }
}

// The file's blocks of the box of our parameter `name`: q_proj / k_proj rows one at a time from
// their permuted places (models/gguf_model.hpp), other weights in one read.
QuantizedMatrix shipped_blocks(const io::GgufFile& file, const HFConfig& config, const std::string& name,
                               const Box& box) {
  const std::string tensor = gguf_tensor_name(name, config);
  const QuantFormat format = shipped_format(file.tensor(tensor), file.path());
  const int64_t row0 = box.offset[0], rows = box.sizes[0], col0 = box.offset[1], cols = box.sizes[1];
  const bool permuted = name.ends_with("self_attn.q_proj.weight") || name.ends_with("self_attn.k_proj.weight");
  if (!permuted)
    return QuantizedMatrix::from_blocks(format, rows, cols, file.read_blocks(tensor, row0, rows, col0, cols));
  const int64_t head_dim = config.head_dim, half = head_dim / 2;
  std::vector<Tensor> parts;
  for (int64_t row = row0; row < row0 + rows; ++row) {
    const int64_t within = row % head_dim;
    parts.push_back(file.read_blocks(tensor, row - within + 2 * (within % half) + within / half, 1, col0, cols));
  }
  return QuantizedMatrix::from_blocks(format, rows, cols, cat(parts, 0));
}

// The options of a --quantize name; for gguf, `sources` are wrapped to note the boxes read.
nn::QuantizeOptions options_for(const std::string& name, const std::string& path, const HFConfig& config,
                                nn::SourceLookup& sources) {
  check_quantize_name(name);
  if (name != kGguf) return quantize_options_from_name(name);
  check<ValueError>(is_gguf_path(path), "--quantize",
                    "gguf keeps the blocks of a .gguf model as shipped; {} is not a .gguf file", path);
  auto boxes = std::make_shared<Boxes>();
  sources = noting_boxes(std::move(sources), boxes);
  nn::QuantizeOptions options;
  options.shipped = [file = io::GgufFile::open(path), config, boxes](const std::string& parameter) {
    return shipped_blocks(file, config, parameter, boxes->at(parameter));
  };
  return options;
}

// A model of `config` marked with `options`, loaded by `load`, tied.
std::shared_ptr<CausalLM> load_quantized(const HFConfig& config, const nn::SourceLookup& sources,
                                         const nn::QuantizeOptions& options, DType dtype,
                                         const std::function<void(CausalLM&)>& load) {
  auto model = std::make_shared<CausalLM>(config, dtype);
  set_quantization(*model, options);
  load(*model);
  for (auto& [name, module] : model->named_modules()) {
    if (auto* slot = dynamic_cast<nn::QuantizableWeight*>(module)) slot->forget_quantization();
  }
  model->tie_word_embeddings();
  return model;
}

// The model `load_model` returns, after the f32 blocks it read and quantized, and everything else it
// freed (sources, file maps, options), went back to the system: called before that, the heap would
// keep what the load's locals free after it (about one quantized embedding table for SmolLM2).
std::shared_ptr<CausalLM> trimmed(const std::function<std::shared_ptr<CausalLM>()>& load_model) {
  std::shared_ptr<CausalLM> model = load_model();
  release_cached_host_blocks();
  return model;
}

int64_t status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1)) * 1024;  // "VmRSS:  1234 kB"
  }
  return 0;
}

}  // namespace

std::string quantize_names() { return "int8, int8-outlier, q8_0, q4_0, q4_1, nf4, gguf"; }

void check_quantize_name(const std::string& name, const char* flag) {
  check<ValueError>(name == kGguf || named_options().count(name) != 0, flag,
                    "unknown quantization '{}'; expected one of {}", name, quantize_names());
}

nn::QuantizeOptions quantize_options_from_name(const std::string& name, const char* flag) {
  check_quantize_name(name, flag);
  check<ValueError>(name != kGguf, flag, "gguf takes its blocks from the model's .gguf file: load with the name");
  return named_options().at(name);
}

void set_quantization(nn::Module& model, const nn::QuantizeOptions& options) {
  for (auto& [name, module] : model.named_modules()) {
    if (auto* slot = dynamic_cast<nn::QuantizableWeight*>(module)) slot->set_quantization(options);
  }
}

std::shared_ptr<CausalLM> load_sharded_quantized(const std::string& path, const DeviceMesh& tp_mesh,
                                                 const nn::TpPlan& plan, DType dtype, const std::string& quantize,
                                                 nn::PlanReport* report) {
  return trimmed([&] {
    const HFConfig config = load_hf_config(path);
    nn::SourceLookup sources = model_sources(path, config);
    const nn::QuantizeOptions options = options_for(quantize, path, config, sources);
    return load_quantized(config, sources, options, dtype, [&](CausalLM& model) {
      nn::PlanReport applied = nn::apply_tp_plan(model, plan, tp_mesh, sources);
      if (report != nullptr) *report = std::move(applied);
    });
  });
}

std::shared_ptr<CausalLM> load_unsharded_quantized(const std::string& path, DType dtype, const std::string& quantize) {
  return trimmed([&] {
    const HFConfig config = load_hf_config(path);
    nn::SourceLookup sources = model_sources(path, config);
    const nn::QuantizeOptions options = options_for(quantize, path, config, sources);
    return load_quantized(config, sources, options, dtype,
                          [&](CausalLM& model) { nn::load_unsharded(model, sources); });
  });
}

std::shared_ptr<CausalLM> load_sharded_quantized(const std::string& path, const DeviceMesh& tp_mesh,
                                                 const nn::TpPlan& plan, DType dtype,
                                                 const nn::QuantizeOptions& options) {
  return trimmed([&] {
    const HFConfig config = load_hf_config(path);
    const nn::SourceLookup sources = model_sources(path, config);
    return load_quantized(config, sources, options, dtype,
                          [&](CausalLM& model) { nn::apply_tp_plan(model, plan, tp_mesh, sources); });
  });
}

std::shared_ptr<CausalLM> load_unsharded_quantized(const std::string& path, DType dtype,
                                                   const nn::QuantizeOptions& options) {
  return trimmed([&] {
    const HFConfig config = load_hf_config(path);
    const nn::SourceLookup sources = model_sources(path, config);
    return load_quantized(config, sources, options, dtype,
                          [&](CausalLM& model) { nn::load_unsharded(model, sources); });
  });
}

bool quantizes_activations(const std::string& name) {
  return name == "int8-outlier" || name == "q4_0" || name == "q4_1" || name == kGguf;
}

ResidentMemory resident_memory() { return {status_bytes("VmRSS"), status_bytes("VmHWM")}; }

}  // namespace dtensor::models
