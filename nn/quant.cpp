#include "nn/quant.hpp"

#include "autograd/autograd.hpp"
#include "nn/module.hpp"
#include "tensor/host_block_cache.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace dtensor::nn {

namespace {

void check_inference(const Tensor& t, const std::string& module, const char* what) {
  check<ValueError>(!t.defined() || !autograd::requires_grad(t), module.c_str(),
                    "the {} requires a gradient, but the weight is quantized: quantized models are for inference only",
                    what);
}

// The input as a DTensor with `target` placements (ValueError when it is plain: the module's
// strategy was not applied, as the f32 Linear says).
DTensor prepared_input(const Value& x, const QuantizedWeight& w, const Placements& target, const std::string& module) {
  // Not check(): its message arguments are built even when it passes, and this runs per token.
  if (!x.is_distributed()) {
    fail<ValueError>(
        module.c_str(),
        "the input is a plain tensor but the quantized weight is a {}; a parallel strategy's prepare_input "
        "makes the input a DTensor",
        w.describe());
  }
  const DTensor& d = x.dtensor();
  return d.placements() == target ? d : d.redistribute(target);
}

Shape with_last(Shape shape, int64_t last) {
  shape.back() = last;
  return shape;
}

// The weight's split on its 1-D mesh as Shard(0), Shard(1) or Replicate.
Placement weight_split(const QuantizedWeight& w) { return w.placements.at(0).normalized(2); }

// int8 of a block of columns with each row's scale from the whole row: absmax over the ranks
// holding the row's other columns, then tensor/quant's rounding, q = round(w * 127 / absmax).
QuantizedMatrix quantize_int8_whole_rows(const Tensor& local, const DeviceMesh& mesh) {
  const Tensor w = local.to(DType::F32).contiguous();
  const Tensor row_absmax = amax(abs(w), {1});
  const Tensor absmax = DTensor::from_local(row_absmax, mesh, {Partial(ReduceOp::Max)}, row_absmax.shape())
                            .redistribute({Replicate()})
                            .to_local()
                            .contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  Tensor data = Tensor::empty({rows, cols}, DType::I8);
  Tensor scales = Tensor::empty({rows}, DType::F32);
  const float* in = w.data<float>();
  const float* amaxes = absmax.data<float>();
  auto* q = data.data<int8_t>();
  auto* scale = scales.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    scale[r] = amaxes[r] / 127.0f;
    const float inv = amaxes[r] != 0.0f ? 127.0f / amaxes[r] : 0.0f;
    for (int64_t c = 0; c < cols; ++c)
      q[r * cols + c] = int8_t(std::clamp(std::nearbyintf(in[r * cols + c] * inv), -127.0f, 127.0f));
  }
  return QuantizedMatrix::from_parts(QuantFormat::Int8, rows, cols, data, scales);
}

}  // namespace

std::string QuantizedWeight::describe() const {
  const std::string what = distributed()
                               ? fmt::format("DTensor {} global {} local [{}, {}]", placements_str(placements),
                                             shape_str(global), local.rows(), local.cols())
                               : fmt::format("Tensor [{}, {}]", local.rows(), local.cols());
  return fmt::format("{} {}, {} bytes", quant_format_name(local.format()), what, local.bytes());
}

std::vector<int64_t> chunk_bounds(int64_t cols, int64_t parts) {
  const int64_t chunk = (cols + parts - 1) / parts;
  std::vector<int64_t> bounds;
  for (int64_t r = 0; r <= parts; ++r) bounds.push_back(std::min(cols, r * chunk));
  return bounds;
}

QuantizedWeight quantize_loaded(Value& weight, const QuantizeOptions& options, const ColumnSplit& split,
                                const std::string& module) {
  check<ValueError>(weight.defined(), module.c_str(), "the weight to quantize is not loaded");
  // Shipped blocks are ggml's (q8_0, q4_0, q4_1): 32 columns each.
  const QuantFormat blocks = options.shipped ? QuantFormat::Q4_0 : options.format;
  const int64_t block = quant_block_size(blocks);
  for (int64_t bound : split.bounds) {
    check<ShapeError>(bound % block == 0, module.c_str(),
                      "a shard boundary at input column {} splits a {} block of {} columns; split the columns on "
                      "multiples of {} (fewer ranks, or another plan for this module)",
                      bound, options.shipped ? "ggml" : quant_format_name(options.format), block, block);
  }
  QuantizedWeight q;
  const Tensor local = weight.local().contiguous();
  const bool whole_rows = options.format == QuantFormat::Int8 && !split.bounds.empty() && split.mesh != nullptr;
  if (options.shipped)
    q.local = options.shipped(module + ".weight");
  else
    q.local = whole_rows ? quantize_int8_whole_rows(local, *split.mesh)
                         : QuantizedMatrix::quantize(local, options.format, options.kernel);
  q.kernel = options.kernel;
  q.global = weight.shape();
  if (weight.is_distributed()) {
    q.mesh = weight.dtensor().mesh();
    q.placements = weight.dtensor().placements();
    check<ValueError>(q.placements.size() == 1, module.c_str(),
                      "a quantized weight is split over a 1-D mesh, got placements {}", placements_str(q.placements));
  }
  // The loaded block goes now, not into the storage cache: no later allocation of the load wants it.
  weight = Value();
  release_cached_host_blocks();
  return q;
}

Value quantized_linear_value(const Value& x, const QuantizedWeight& w, const Value* bias, const std::string& module) {
  check_inference(x.local(), module, "input");
  if (bias != nullptr) check_inference(bias->local(), module, "bias");
  const Tensor no_bias;
  const Tensor& b = bias != nullptr ? bias->local() : no_bias;
  if (!w.distributed()) {
    if (x.is_distributed()) {
      fail<ValueError>(module.c_str(), "the input is a DTensor ({}) but the quantized weight is a plain tensor",
                       x.describe());
    }
    return quantized_linear(x.tensor(), w.local, w.kernel, b);
  }
  const Placement split = weight_split(w);
  if (split.is_shard(1)) {
    // Each rank's input columns times its weight columns: partial sums; the bias is added once.
    const DTensor in = prepared_input(x, w, {Shard(int64_t(x.shape().size()) - 1)}, module);
    const bool first = w.mesh->coordinate().at(0) == 0;
    Tensor y = quantized_linear(in.local_tensor(), w.local, w.kernel, first ? b : no_bias);
    return DTensor::from_local(y, *w.mesh, {Partial()}, with_last(in.shape(), w.global[0]));
  }
  const DTensor in = prepared_input(x, w, {Replicate()}, module);
  Tensor y = quantized_linear(in.local_tensor(), w.local, w.kernel, b);
  const Placements out = split.is_shard(0) ? Placements{Shard(in.dim() - 1)} : Placements{Replicate()};
  return DTensor::from_local(y, *w.mesh, out, with_last(in.shape(), w.global[0]));
}

Value quantized_embedding_value(const Value& ids, const QuantizedWeight& w, const std::string& module) {
  if (!w.distributed()) {
    if (ids.is_distributed()) {
      fail<ValueError>(module.c_str(), "the ids are a DTensor ({}) but the quantized weight is a plain tensor",
                       ids.describe());
    }
    return w.local.dequantize_rows(ids.tensor());
  }
  const DTensor in = prepared_input(ids, w, {Replicate()}, module);
  Shape out_shape = in.shape();
  out_shape.push_back(w.global[1]);
  const Placement split = weight_split(w);
  if (!split.is_shard(0)) {
    const Placements out =
        split.is_shard(1) ? Placements{Shard(int64_t(out_shape.size()) - 1)} : Placements{Replicate()};
    return DTensor::from_local(w.local.dequantize_rows(in.local_tensor()), *w.mesh, out, out_shape);
  }
  // Vocab-parallel: this rank's rows [first, first + rows) of the table, zeros for other ids.
  const int64_t first = chunk_bounds(w.global[0], w.mesh->size()).at(size_t(w.mesh->coordinate().at(0)));
  std::vector<int64_t> values = in.local_tensor().to(DType::I64).to(Device::cpu()).to_vector<int64_t>();
  std::vector<float> mine(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const int64_t row = values[i] - first;
    const bool held = row >= 0 && row < w.local.rows();
    mine[i] = held ? 1.0f : 0.0f;
    values[i] = held ? row : 0;
  }
  Shape mask_shape = in.shape();
  mask_shape.push_back(1);
  const Device device = w.local.device();
  const Tensor rows = w.local.dequantize_rows(Tensor::from_vector(values, in.shape()).to(device));
  const Tensor masked = mul(rows, Tensor::from_vector(mine, mask_shape).to(device));
  return DTensor::from_local(masked, *w.mesh, {Partial()}, out_shape);
}

LocalWeights local_weights(Module& root) {
  LocalWeights held;
  std::set<const QuantizedWeight*> seen;
  for (auto& [name, module] : root.named_modules()) {
    if (const auto* slot = dynamic_cast<const QuantizableWeight*>(module)) {
      const QuantizedWeight* w = slot->quantized_weight().get();
      if (w == nullptr || !seen.insert(w).second) continue;
      held.bytes += w->local.bytes();
      held.elements += w->local.rows() * w->local.cols();
    }
  }
  for (auto& [name, value] : root.named_parameters()) {
    if (!value->defined()) continue;
    held.bytes += int64_t(value->local().nbytes());
    held.elements += value->local().numel();
  }
  return held;
}

}  // namespace dtensor::nn
