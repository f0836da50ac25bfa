// Layers. Each declares its parameters with their full shapes and computes on Values: plain
// tensors when unsharded, DTensors when a strategy partitioned its parameters (the strategy's
// prepare_input then hands it a DTensor input, and the DTensor ops propagate the sharding).
#pragma once

#include "nn/head_sharding.hpp"
#include "nn/module.hpp"
#include "nn/quant.hpp"

#include <optional>

namespace dtensor::nn {

// y = x @ weight^T + bias, weight [out, in], bias [out]. With set_quantization (before loading)
// the weight is held as this rank's quantized block (nn/quant.hpp), for inference.
class Linear : public Module, public QuantizableWeight {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, DType dtype = DType::F32);
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool has_bias() const { return has_parameter("bias"); }

  // Declares that this Linear projects to attention heads (role Query or KeyValue: the output
  // rows are heads) or from them (role Output: the input columns are query heads), so colwise and
  // rowwise split it in whole heads (nn/head_sharding.hpp). ValueError when the heads are
  // inconsistent or the rows / columns are not heads x head_dim.
  struct HeadLayout {
    HeadRole role;
    AttentionHeads heads;
  };
  void set_heads(HeadRole role, const AttentionHeads& heads);
  const std::optional<HeadLayout>& heads() const { return heads_; }

  void parameter_loaded(const std::string& name, const std::string& param) override;
  void state_to(Device device) override;

 protected:
  Value forward(const Value& x) override;

 private:
  // How the ranks split the loaded weight's input columns (every rank's block boundaries).
  ColumnSplit column_split() const;

  int64_t in_, out_;
  std::string name_;  // the dotted path, once loaded (errors of the quantized forward name it)
  std::optional<HeadLayout> heads_;
};

// Rows of weight [vocab, hidden] picked by integer ids; quantizable as Linear is (the rows are
// then dequantized as they are looked up).
class Embedding : public Module, public QuantizableWeight {
 public:
  Embedding(int64_t vocab, int64_t hidden, DType dtype = DType::F32);

  void parameter_loaded(const std::string& name, const std::string& param) override;
  void state_to(Device device) override;
  // Where the table lies (the quantized one's device when quantized).
  Device device() const;

 protected:
  Value forward(const Value& ids) override;

 private:
  std::string name_;
};

// x * rsqrt(mean(x^2) + eps) * weight over the last dim (computed in f32, as Hugging Face does).
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t hidden, double eps = 1e-6, DType dtype = DType::F32);

 protected:
  Value forward(const Value& x) override;

 private:
  double eps_;
};

// (x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased variance).
class LayerNorm : public Module {
 public:
  LayerNorm(int64_t hidden, double eps = 1e-5, DType dtype = DType::F32);

 protected:
  Value forward(const Value& x) override;

 private:
  double eps_;
};

// Zeroes each element with probability p and scales the rest by 1 / (1 - p) while training.
// The mask of an element depends only on (seed, call number, global index), so every sharding
// of the same tensor drops the same elements. Identity when not training.
class Dropout : public Module {
 public:
  explicit Dropout(double p, uint64_t seed = 0);
  void train(bool on) { training_ = on; }
  uint64_t random_calls() const override { return calls_; }
  void set_random_calls(uint64_t calls) override { calls_ = calls; }

 protected:
  Value forward(const Value& x) override;

 private:
  double p_;
  uint64_t seed_;
  uint64_t calls_ = 0;
  bool training_ = true;
};

class SiLU : public Module {
 public:
  SiLU() : Module("SiLU") {}

 protected:
  Value forward(const Value& x) override;
};

class GELU : public Module {
 public:
  GELU() : Module("GELU") {}

 protected:
  Value forward(const Value& x) override;
};

}  // namespace dtensor::nn
