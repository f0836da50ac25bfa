// Quantized weights in the module tree, for inference (docs/design.md section 5, "Quantized
// strategies").
//
// A Linear or Embedding marked with set_quantization keeps its weight as a QuantizedMatrix
// (tensor/quant/quantized.hpp) of this rank's block instead of an f32 tensor. The loaders read the
// block the module's strategy asks for, as for an f32 model, and the module quantizes it at once
// and frees it (Module::parameter_loaded), so loading never holds more than one f32 block. The
// strategies are the f32 ones: the quantized forward hands its result on with the placements the
// f32 forward gives it, and prepare_input / prepare_output do the rest:
//
//   weight block          input (prepared)   output of the forward
//   Shard(0) (colwise)    Replicate          Shard(-1): this rank's output features
//   Shard(1) (rowwise)    Shard(-1)          Partial: the strategy reduces it (bias on the first rank)
//   Replicate             Replicate          Replicate
//   plain (unsharded, local_*, uneven heads)  plain   plain
//
// An Embedding looks its rows up with dequantize_rows: vocab-parallel (Shard(0)) ranks give their
// rows and zeros elsewhere, Partial; a hidden split (Shard(1)) gives Shard(-1).
//
// Column splits (rowwise, Embedding colwise) must fall on the format's block boundaries so that
// each rank's blocks are the unsharded matrix's blocks: every rank checks every rank's boundary
// and raises the same ShapeError naming the module, the block size and the boundary. int8's one
// scale per row comes from the whole row's absmax (an all-reduce at load), so every rank holds
// exactly the unsharded int8 values of its columns.
//
// Inference only: a quantized weight takes no gradient; an input that requires one is a
// ValueError naming the module.
#pragma once

#include "nn/value.hpp"
#include "tensor/quant/quantized.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dtensor::nn {

struct QuantizeOptions {
  QuantFormat format = QuantFormat::Int8;
  QuantOptions kernel;  // LLM.int8()'s outlier threshold (int8 only)
  // Blocks quantized already (a GGUF file's own, models/quant.hpp) instead of quantizing: the
  // block of parameter `name` that the loader just read. Column splits must then fall on ggml's
  // 32-column blocks.
  std::function<QuantizedMatrix(const std::string& name)> shipped;
};

// A weight [rows, cols] held quantized: this rank's block, and the DTensor layout the f32 value
// had (mesh, placements, global shape), or none for a plain value.
struct QuantizedWeight {
  QuantizedMatrix local;
  QuantOptions kernel;
  std::optional<DeviceMesh> mesh;
  Placements placements;
  Shape global;

  bool distributed() const { return mesh.has_value(); }
  // "Q4_0 DTensor (S(0)) global [64, 32] local [32, 32], 1152 bytes" for plan reports.
  std::string describe() const;
};

// How the ranks split a weight's input columns: every rank's block boundaries (global column
// indices) over `mesh`. Empty bounds: the columns are whole on every rank.
struct ColumnSplit {
  std::vector<int64_t> bounds;
  const DeviceMesh* mesh = nullptr;
};

// Quantizes a loaded weight value (its local block) keeping its layout, and frees the value. Every boundary of a column
// split must be a multiple of the format's block size, else a ShapeError naming `module`, the
// block size and the boundary. int8 under a column split takes each row's absmax over the whole
// row (one all-reduce over the split's mesh), so its values are the unsharded ones.
QuantizedWeight quantize_loaded(Value& weight, const QuantizeOptions& options, const ColumnSplit& split,
                                const std::string& module);

// The column boundaries of torch.chunk over `parts` ranks of `cols` columns: 0, c, 2c, ..., cols.
std::vector<int64_t> chunk_bounds(int64_t cols, int64_t parts);

// x @ W^T (+ bias) with the placements the f32 Linear gives (see the table above).
Value quantized_linear_value(const Value& x, const QuantizedWeight& w, const Value* bias, const std::string& module);
// The rows of W picked by ids (an Embedding lookup) with the f32 Embedding's placements.
Value quantized_embedding_value(const Value& ids, const QuantizedWeight& w, const std::string& module);

// The weight slot of a module that can hold its weight quantized (Linear, Embedding).
class QuantizableWeight {
 public:
  virtual ~QuantizableWeight() = default;
  // Marks the weight for quantization at load (before loading; a loaded weight stays as it is).
  void set_quantization(const QuantizeOptions& options) { options_ = options; }
  const std::optional<QuantizeOptions>& quantization() const { return options_; }
  // Drops the options once loaded (what they hold for loading, a GGUF file's mapping, goes too).
  void forget_quantization() { options_.reset(); }
  // The quantized weight once loaded, else null.
  const std::shared_ptr<QuantizedWeight>& quantized_weight() const { return weight_; }
  // Moves the quantized weight to `device` in place, so a module sharing it sees it there too.
  void move_quantized_weight(Device device) {
    if (weight_) weight_->local = weight_->local.to(device);
  }
  // Shares another module's quantized weight (a tied embedding and lm_head).
  void set_quantized_weight(std::shared_ptr<QuantizedWeight> weight) { weight_ = std::move(weight); }

 protected:
  std::optional<QuantizeOptions> options_;
  std::shared_ptr<QuantizedWeight> weight_;
};

// What this rank holds of the model under `root`: the bytes of its quantized weights and other
// loaded parameters, and how many elements they are (bytes in f32 / bf16 would be 4x / 2x that),
// a shared (tied) weight counted once.
struct LocalWeights {
  int64_t bytes = 0;
  int64_t elements = 0;
};
LocalWeights local_weights(class Module& root);

}  // namespace dtensor::nn
