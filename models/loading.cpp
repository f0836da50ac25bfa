// Checkpoint sources under the model's parameter names, and loading a model directory.
#include "models/causal_lm.hpp"

#include "models/gguf_model.hpp"
#include "models/hf_config.hpp"

#include <algorithm>

namespace dtensor::models {

namespace {

constexpr std::string_view kGateUpSuffix = ".block_sparse_moe.experts.gate_up";
constexpr std::string_view kDownSuffix = ".block_sparse_moe.experts.down";

// The checkpoint tensors `<experts>.{e}.<name>.weight` of every expert, checked against `shape`
// and against one another's dtype.
std::vector<io::TensorSource> expert_sources(const io::Checkpoint& checkpoint, const std::string& experts,
                                             const std::string& name, int64_t count, const Shape& shape) {
  std::vector<io::TensorSource> sources;
  for (int64_t e = 0; e < count; ++e) {
    const std::string tensor = fmt::format("{}.{}.{}.weight", experts, e, name);
    io::TensorSource s = checkpoint.source(tensor);  // ValueError naming the tensor when missing
    check<ShapeError>(s.shape == shape, "load", "checkpoint tensor '{}' has shape {}, the model expects {}", tensor,
                      shape_str(s.shape), shape_str(shape));
    // Not check(): its message arguments are evaluated even when it passes, and sources[0] needs a source.
    if (!sources.empty() && s.dtype != sources[0].dtype) {
      fail<DTypeError>("load", "checkpoint tensor '{}' is {}, expert 0's is {}", tensor, s.dtype, sources[0].dtype);
    }
    sources.push_back(std::move(s));
  }
  return sources;
}

// gate_up [E, 2I, H]: rows [0, I) of expert e are w1 (gate), rows [I, 2I) are w3 (up). A box is
// read per expert from the part(s) its rows fall in.
io::TensorSource packed_gate_up(const io::Checkpoint& checkpoint, const std::string& experts, const HFConfig& c) {
  const int64_t inter = c.intermediate_size;
  const Shape part = {inter, c.hidden_size};
  auto gates = expert_sources(checkpoint, experts, "w1", c.num_local_experts, part);
  auto ups = expert_sources(checkpoint, experts, "w3", c.num_local_experts, part);
  auto read = [gates, ups, inter](const Shape& offset, const Tensor& out) {
    const int64_t row = offset[1], rows = out.size(1), col = offset[2];
    const int64_t gate_rows = std::clamp(inter - row, int64_t(0), rows);
    for (int64_t i = 0; i < out.size(0); ++i) {
      const size_t e = size_t(offset[0] + i);
      const Tensor dst = out.select(0, i);
      if (gate_rows > 0) gates[e].read_box({row, col}, dst.narrow(0, 0, gate_rows));
      if (rows > gate_rows) ups[e].read_box({row + gate_rows - inter, col}, dst.narrow(0, gate_rows, rows - gate_rows));
    }
  };
  return {gates[0].dtype, {c.num_local_experts, 2 * inter, c.hidden_size}, read};
}

// down [E, H, I]: expert e's w2 [H, I].
io::TensorSource packed_down(const io::Checkpoint& checkpoint, const std::string& experts, const HFConfig& c) {
  auto downs = expert_sources(checkpoint, experts, "w2", c.num_local_experts, {c.hidden_size, c.intermediate_size});
  auto read = [downs](const Shape& offset, const Tensor& out) {
    for (int64_t i = 0; i < out.size(0); ++i)
      downs[size_t(offset[0] + i)].read_box({offset[1], offset[2]}, out.select(0, i));
  };
  return {downs[0].dtype, {c.num_local_experts, c.hidden_size, c.intermediate_size}, read};
}

// `name` without `suffix` when it ends with it.
std::optional<std::string> strip_suffix(const std::string& name, std::string_view suffix) {
  if (!name.ends_with(suffix)) return std::nullopt;
  // The prefix plus ".block_sparse_moe.experts": the per-expert tensors live under it.
  return name.substr(0, name.size() - suffix.size()) + ".block_sparse_moe.experts";
}

}  // namespace

nn::SourceLookup model_sources(const std::string& path, const HFConfig& config) {
  if (is_gguf_path(path)) return gguf_sources(io::GgufFile::open(path), config);
  return checkpoint_sources(io::Checkpoint::open(path), config);
}

nn::SourceLookup checkpoint_sources(const io::Checkpoint& checkpoint, const HFConfig& config) {
  return [checkpoint, config](const std::string& name) -> io::TensorSource {
    // transformers ties lm_head to the embedding whether or not the file also has lm_head.weight.
    if (name == "lm_head.weight" && config.tie_word_embeddings) return checkpoint.source("model.embed_tokens.weight");
    if (config.is_moe()) {
      if (auto experts = strip_suffix(name, kGateUpSuffix)) return packed_gate_up(checkpoint, *experts, config);
      if (auto experts = strip_suffix(name, kDownSuffix)) return packed_down(checkpoint, *experts, config);
    }
    return checkpoint.source(name);
  };
}

std::shared_ptr<CausalLM> load_sharded(const std::string& dir, const DeviceMesh& tp_mesh, const nn::TpPlan& plan,
                                       DType dtype, nn::PlanReport* report) {
  const HFConfig config = load_hf_config(dir);
  auto model = std::make_shared<CausalLM>(config, dtype);
  nn::PlanReport applied = nn::apply_tp_plan(*model, plan, tp_mesh, model_sources(dir, config));
  model->tie_word_embeddings();
  if (report != nullptr) *report = std::move(applied);
  return model;
}

std::shared_ptr<CausalLM> load_unsharded(const std::string& dir, DType dtype) {
  const HFConfig config = load_hf_config(dir);
  auto model = std::make_shared<CausalLM>(config, dtype);
  nn::load_unsharded(*model, model_sources(dir, config));
  model->tie_word_embeddings();
  return model;
}

}  // namespace dtensor::models
