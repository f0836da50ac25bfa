// The check of the nn gradient suites: a module tree under a tp_plan, trained one backward on the
// 1-D world mesh, against the same tree unsharded on the full tensors (the local autograd, itself
// gradchecked in the autograd suite). loss = sum(output * cotangent); every parameter's gradient
// and the input's must equal the unsharded ones (a plain parameter's: its block, as the strategy
// partitions it).
#pragma once

#include "autograd/ops.hpp"
#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/autograd.hpp"
#include "nn/strategy.hpp"
#include "nn/tp_plan.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <optional>
#include <set>

namespace dtensor::testing {

namespace ag = dtensor::autograd;

inline Tensor ints(const Shape& shape, uint64_t seed, int64_t low = -3, int64_t high = 4) {
  return random(shape, DType::I64, {.seed = seed, .a = double(low), .b = double(high)}).to(DType::F64);
}

inline DeviceMesh world_line() { return DeviceMesh::from_world({dtensor::world().size()}); }

// This rank's torch.chunk block of `full` along `dim` (a plain input or output split by rank).
inline Tensor rank_chunk(const Tensor& full, int64_t dim) {
  const DeviceMesh mesh = world_line();
  return DTensor::distribute(full, mesh, {Shard(dim)}).local_tensor().contiguous();
}

using BlockOf = std::function<Tensor(const Tensor& full)>;

struct GradCase {
  std::function<std::shared_ptr<nn::Module>()> make;  // a fresh tree
  std::map<std::string, Tensor> weights;              // full parameters by dotted name
  nn::TpPlan plan;
  Tensor x;          // the full input
  Tensor cotangent;  // d loss / d output, full
  // The input the sharded tree takes: this rank's plain block of x (whole when unset), or a
  // DTensor of x with these placements.
  BlockOf input_block;
  std::optional<Placements> input_placements;
  // This rank's block of a plain output (whole when unset).
  BlockOf output_block;
  // Biases only the first rank holds (zeros elsewhere, so the partial sums add them once): their
  // gradient is checked there; elsewhere they must take none.
  std::set<std::string> first_rank_only;
  double tolerance = 0;  // 0: exact (integer-valued data)
  const nn::StrategyRegistry* registry = &nn::StrategyRegistry::global();
};

struct TreeGradients {
  std::map<std::string, Tensor> parameters;
  Tensor input;
};

inline nn::SourceLookup sources_of(const GradCase& c) {
  return [&c](const std::string& name) { return io::tensor_source(c.weights.at(name)); };
}

inline TreeGradients reference_gradients(const GradCase& c) {
  std::shared_ptr<nn::Module> tree = c.make();
  nn::load_unsharded(*tree, sources_of(c));
  tree->requires_grad_();
  Tensor x = c.x.clone();
  if (is_floating(x.dtype())) ag::set_requires_grad(x);
  ag::backward(ag::sum(ag::mul((*tree)(x).tensor(), c.cotangent)));
  TreeGradients grads{{}, ag::grad(x)};
  for (auto& [name, value] : tree->named_parameters()) grads.parameters[name] = ag::grad(value->tensor());
  return grads;
}

inline bool close(const Tensor& a, const Tensor& b, double tolerance) {
  return tolerance == 0 ? equal(a, b) : allclose(a, b, tolerance, tolerance);
}

// Backward from loss = sum(y * cotangent) over this rank's part of y (a plain output's loss is
// this rank's); returns the collectives the backward ran.
inline std::vector<CommRecorder::Call> backward_from(const nn::Value& y, const GradCase& c, const DeviceMesh& mesh) {
  if (y.is_distributed()) {
    DTensor v = DTensor::distribute(c.cotangent, mesh, y.dtensor().placements());
    DTensor loss = ag::sum(ag::mul(y.dtensor(), v));
    CommRecorder recorder;
    ag::backward(loss);
    return recorder.calls();
  }
  Tensor v = c.output_block ? c.output_block(c.cotangent) : c.cotangent;
  Tensor loss = ag::sum(ag::mul(y.tensor(), v));
  CommRecorder recorder;
  ag::backward(loss);
  return recorder.calls();
}

inline uint64_t count(const std::vector<CommRecorder::Call>& calls, CollectiveKind kind) {
  uint64_t n = 0;
  for (const CommRecorder::Call& call : calls) n += call.kind == kind ? 1 : 0;
  return n;
}

inline void check_parameter(nn::Module& tree, const std::string& name, const nn::Value& value, const Tensor& expected,
                            const GradCase& c, const DeviceMesh& mesh) {
  INFO("parameter " << name << " " << value.describe());
  if (value.is_distributed()) {
    DTensor grad = ag::grad(value.dtensor());
    REQUIRE(grad.local_tensor().defined());
    CHECK(grad.placements() == value.dtensor().placements());
    CHECK(close(grad.full_tensor(), expected, c.tolerance));
    return;
  }
  const Tensor grad = ag::grad(value.tensor());
  if (c.first_rank_only.count(name) != 0) {
    // The other ranks' zeros take no gradient, so an optimizer leaves them zero.
    if (mesh.coordinate()[0] != 0) {
      CHECK_FALSE(ag::requires_grad(value.tensor()));
      CHECK_FALSE(grad.defined());
      return;
    }
    REQUIRE(grad.defined());
    CHECK(close(grad, expected, c.tolerance));
    return;
  }
  REQUIRE(grad.defined());
  const size_t dot = name.rfind('.');
  nn::Module* owner = dot == std::string::npos ? &tree : tree.find(name.substr(0, dot));
  const std::string param = dot == std::string::npos ? name : name.substr(dot + 1);
  Tensor block = expected;
  if (owner->strategy() != nullptr) {
    block = owner->strategy()->partition(*owner, param, io::tensor_source(expected), mesh).tensor();
  }
  CHECK(close(grad, block, c.tolerance));
}

// Runs the case sharded and checks every gradient; returns the collectives the backward ran.
inline std::vector<CommRecorder::Call> check_gradients(const GradCase& c) {
  const DeviceMesh mesh = world_line();
  const TreeGradients expected = reference_gradients(c);
  std::shared_ptr<nn::Module> tree = c.make();
  nn::apply_tp_plan(*tree, c.plan, mesh, sources_of(c), *c.registry);
  tree->requires_grad_();

  nn::Value input;
  if (c.input_placements) {
    DTensor x = DTensor::distribute(c.x, mesh, *c.input_placements);
    ag::set_requires_grad(x);
    input = x;
  } else {
    Tensor x = c.input_block ? c.input_block(c.x) : c.x.clone();
    if (is_floating(x.dtype())) ag::set_requires_grad(x);  // ids get no gradient
    input = x;
  }
  const std::vector<CommRecorder::Call> calls = backward_from((*tree)(input), c, mesh);

  for (auto& [name, value] : tree->named_parameters()) {
    check_parameter(*tree, name, *value, expected.parameters.at(name), c, mesh);
  }
  INFO("input gradient");
  if (!is_floating(c.x.dtype())) return calls;
  if (input.is_distributed()) {
    CHECK(close(ag::grad(input.dtensor()).full_tensor(), expected.input, c.tolerance));
  } else {
    Tensor block = c.input_block ? c.input_block(expected.input) : expected.input;
    CHECK(close(ag::grad(input.tensor()), block, c.tolerance));
  }
  return calls;
}

}  // namespace dtensor::testing
