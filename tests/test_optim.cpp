// SGD and AdamW on DTensor and plain parameters against torch's updates written by hand over the
// whole tensors (optim_test_util.hpp): every rank's block of every parameter and state after
// several steps, under random placements (uneven shards, 2-D meshes), with parameters whose first
// gradient comes late or never; states laid out as their parameters; no communication in step().
#include "optim_test_util.hpp"

#include "collectives/comm_recorder.hpp"
#include "optim/optim.hpp"

using namespace dtensor;
using namespace dtensor::testing;
using optim::NamedParameters;

namespace {

struct ParamCase {
  std::string name;
  Shape shape;
  bool distributed;
  int first_step;        // the first step that gives it a gradient; -1: never
  bool strided = false;  // a plain tensor that is a transposed view: the optimizers' path for views
};

const std::vector<ParamCase> kParams = {
    {"w", {5, 3}, true, 0}, {"b", {7}, true, 0},          {"x", {3, 2, 5}, true, 0},        {"plain", {4, 3}, false, 0},
    {"late", {6}, true, 2}, {"frozen", {2, 2}, true, -1}, {"view", {3, 4}, false, 1, true},
};
const std::vector<double> kLrs = {0.1, 0.05, 0.2, 0.02};

std::vector<std::pair<std::string, std::vector<double>>> reference_states(const ReferenceSGD& r) {
  if (r.momentum == 0 || r.buffer.empty()) return {};
  return {{"momentum_buffer", r.buffer}};
}

std::vector<std::pair<std::string, std::vector<double>>> reference_states(const ReferenceAdamW& r) {
  if (r.t == 0) return {};
  return {{"exp_avg", r.m}, {"exp_avg_sq", r.v}};
}

// The state has the parameter's layout: a DTensor with its mesh, placements and global shape.
void check_layout(const nn::Value& state, const nn::Value& param) {
  REQUIRE(state.is_distributed() == param.is_distributed());
  CHECK(state.shape() == param.shape());
  CHECK(state.local().shape() == param.local().shape());
  CHECK(state.dtype() == (param.dtype() == DType::F64 ? DType::F64 : DType::F32));
  if (param.is_distributed()) {
    CHECK(state.dtensor().mesh() == param.dtensor().mesh());
    CHECK(state.dtensor().placements() == param.dtensor().placements());
  }
}

// A leaf holding `full` (2-D) in a transposed layout, so not contiguous.
nn::Value make_strided_param(const Tensor& full) {
  Tensor view = full.transpose(0, 1).contiguous().transpose(0, 1);
  REQUIRE(!view.is_contiguous());
  ag::set_requires_grad(view);
  return view;
}

bool close(const Tensor& got, const Tensor& expected, double tol) {
  return allclose(got.to(DType::F64), expected.to(DType::F64), tol, tol);
}

// kParams made on `mesh` (random layouts) in `dtype`, with the reference's copy of each.
template <typename Reference>
struct Setup {
  std::vector<nn::Value> params = std::vector<nn::Value>(kParams.size());
  std::vector<Reference> refs;
  std::vector<Tensor> initial_blocks;  // clones of the first blocks
  std::vector<Tensor> handles;         // the blocks the model holds
  NamedParameters named;
  std::string layouts;

  Setup(const DeviceMesh& mesh, const Reference& reference, DType dtype, std::mt19937& rng)
      : refs(kParams.size(), reference) {
    for (size_t i = 0; i < kParams.size(); ++i) {
      const ParamCase& c = kParams[i];
      Tensor full = mul(integer_valued(c.shape, DType::F64, rng()), 0.25).to(dtype);
      std::optional<Placements> placements;
      if (c.distributed) placements = random_placements(rng, mesh, int64_t(c.shape.size()), false);
      params[i] = c.strided ? make_strided_param(full) : make_param(full, mesh, placements);
      refs[i].p = values_of(full);
      initial_blocks.push_back(params[i].local().clone());
      handles.push_back(params[i].local());
      named.push_back({c.name, &params[i]});
      layouts += c.name + " " + params[i].describe() + "; ";
    }
  }
};

// Every block of every parameter and state against the reference's whole tensors.
template <typename Opt, typename Reference>
void compare(const Opt& opt, const Setup<Reference>& setup, DType dtype, double tol) {
  for (size_t i = 0; i < kParams.size(); ++i) {
    const ParamCase& c = kParams[i];
    const nn::Value& param = setup.params[i];
    INFO("parameter " << c.name);
    CHECK(param.local().dtype() == dtype);
    if (c.first_step < 0) {
      CHECK(equal(param.local(), setup.initial_blocks[i]));
      CHECK_THROWS_AS(opt.state(c.name, "momentum_buffer"), ValueError);
      CHECK_THROWS_AS(opt.state(c.name, "exp_avg"), ValueError);
      continue;
    }
    // Updated in place: the block the model held before the steps holds the new values.
    CHECK(param.local().data_ptr() == setup.handles[i].data_ptr());
    CHECK(close(setup.handles[i], block_like(param, tensor_of(setup.refs[i].p, c.shape)), tol));
    for (const auto& [which, values] : reference_states(setup.refs[i])) {
      INFO("state " << which);
      const nn::Value& state = opt.state(c.name, which);
      check_layout(state, param);
      CHECK(close(state.local(), block_like(param, tensor_of(values, c.shape)), tol));
    }
  }
}

// Runs kLrs.size() steps of Opt over kParams and of the reference on the whole tensors, each
// parameter getting gradients from its first_step on, then compares.
template <typename Opt, typename Options, typename Reference>
void check_steps(const DeviceMesh& mesh, const Options& options, const Reference& reference, DType dtype, double tol,
                 std::mt19937& rng) {
  Setup<Reference> setup(mesh, reference, dtype, rng);
  INFO("mesh " << mesh.to_string() << " " << setup.layouts << " dtype " << dtype_name(dtype));
  Opt opt(setup.named, options);
  for (size_t k = 0; k < kLrs.size(); ++k) {
    opt.set_lr(kLrs[k]);
    for (size_t i = 0; i < kParams.size(); ++i) {
      if (kParams[i].first_step < 0 || int(k) < kParams[i].first_step) continue;
      Tensor g = integer_valued(kParams[i].shape, dtype, rng());
      give_grad(setup.params[i], g);
      std::vector<double>& p = setup.refs[i].p;
      setup.refs[i].step(values_of(g), kLrs[k]);
      // A 16-bit parameter is rounded to its dtype after each update.
      if (dtype != DType::F64 && dtype != DType::F32) p = values_of(tensor_of(p, {int64_t(p.size())}).to(dtype));
    }
    CommRecorder recorder;
    opt.step();
    CHECK(recorder.calls().empty());
    opt.zero_grad();
  }
  compare(opt, setup, dtype, tol);
}

}  // namespace

TEST_CASE("SGD matches torch's update, momentum and Nesterov, on DTensor and plain parameters", "[optim][sgd]") {
  std::mt19937 rng(1601);
  const std::vector<optim::SGDOptions> configs = {
      {.momentum = 0.9, .nesterov = true, .weight_decay = 0.1},
      {.momentum = 0.8, .dampening = 0.3},
      {.weight_decay = 0.05},
  };
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const optim::SGDOptions& o : configs) {
      ReferenceSGD reference{
          .momentum = o.momentum, .dampening = o.dampening, .weight_decay = o.weight_decay, .nesterov = o.nesterov};
      for (int draw = 0; draw < 3; ++draw) check_steps<optim::SGD>(mesh, o, reference, DType::F64, 1e-12, rng);
    }
  }
}

TEST_CASE("SGD without momentum keeps no state", "[optim][sgd]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  nn::Value w = make_param(integer_valued({5, 2}, DType::F64, 1), mesh, Placements{Shard(0)});
  optim::SGD opt({{"w", &w}}, {.lr = 0.5});
  give_grad(w, integer_valued({5, 2}, DType::F64, 2));
  opt.step();
  CHECK_THROWS_AS(opt.state("w", "momentum_buffer"), ValueError);
}

TEST_CASE("AdamW matches torch's update, per-parameter step counts, on DTensor and plain parameters",
          "[optim][adamw]") {
  std::mt19937 rng(1602);
  const std::vector<optim::AdamWOptions> configs = {
      {},
      {.beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1},
      {.beta1 = 0.0, .beta2 = 0.5, .eps = 0.5, .weight_decay = 0.0},
  };
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const optim::AdamWOptions& o : configs) {
      ReferenceAdamW reference{.beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = o.weight_decay};
      for (int draw = 0; draw < 3; ++draw) check_steps<optim::AdamW>(mesh, o, reference, DType::F64, 1e-12, rng);
    }
  }
}

TEST_CASE("f32 parameters keep f32 states, bf16 ones f32 states and bf16 values", "[optim][dtype]") {
  std::mt19937 rng(1603);
  for (const DeviceMesh& mesh : op_meshes()) {
    check_steps<optim::AdamW>(mesh, optim::AdamWOptions{.weight_decay = 0.1}, ReferenceAdamW{.weight_decay = 0.1},
                              DType::F32, 1e-5, rng);
    check_steps<optim::SGD>(mesh, optim::SGDOptions{.momentum = 0.9, .nesterov = true},
                            ReferenceSGD{.momentum = 0.9, .nesterov = true}, DType::F32, 1e-5, rng);
    check_steps<optim::AdamW>(mesh, optim::AdamWOptions{}, ReferenceAdamW{}, DType::BF16, 1e-2, rng);
  }
}

TEST_CASE("AdamW counts steps per parameter, as torch", "[optim][adamw]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  nn::Value a = make_param(integer_valued({3}, DType::F64, 3), mesh, Placements{Replicate()});
  nn::Value b = make_param(integer_valued({3}, DType::F64, 4), mesh, std::nullopt);
  optim::AdamW opt({{"a", &a}, {"b", &b}});
  give_grad(a, integer_valued({3}, DType::F64, 5));
  opt.step();
  give_grad(b, integer_valued({3}, DType::F64, 6));
  opt.step();
  CHECK(opt.step_count("a") == 2);
  CHECK(opt.step_count("b") == 1);
  CHECK_THROWS_AS(opt.step_count("c"), ValueError);
}

TEST_CASE("zero_grad zeros the gradients in their buffers", "[optim]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  nn::Value w = make_param(integer_valued({5, 3}, DType::F64, 7), mesh, Placements{Shard(1)});
  nn::Value v = make_param(integer_valued({4}, DType::F64, 8), mesh, std::nullopt);
  optim::SGD opt({{"w", &w}, {"v", &v}}, {.lr = 0.1});
  give_grad(w, integer_valued({5, 3}, DType::F64, 9));
  give_grad(v, integer_valued({4}, DType::F64, 10));
  Tensor w_grad = ag::grad(w.dtensor()).to_local(), v_grad = ag::grad(v.tensor());
  opt.zero_grad();
  CHECK(ag::grad(w.dtensor()).to_local().data_ptr() == w_grad.data_ptr());
  CHECK(ag::grad(v.tensor()).data_ptr() == v_grad.data_ptr());
  CHECK(equal(w_grad, Tensor::zeros(w_grad.shape(), DType::F64)));
  CHECK(equal(v_grad, Tensor::zeros({4}, DType::F64)));
}

TEST_CASE("a parameter given twice, as tied weights are, is updated and counted once", "[optim][tied]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  Tensor full = integer_valued({6, 2}, DType::F64, 30), g = integer_valued({6, 2}, DType::F64, 31);
  nn::Value w = make_param(full, mesh, Placements{Shard(0)});
  nn::Value tied = w;  // a copy of the handle: the same leaf
  give_grad(w, g);
  NamedParameters named = {{"embed.weight", &w}, {"lm_head.weight", &tied}, {"again", &w}};
  double expected_sq = 0;
  for (double v : values_of(g)) expected_sq += v * v;
  CHECK(std::abs(optim::clip_grad_norm(named, 1e9) - std::sqrt(expected_sq)) <= 1e-12 * std::sqrt(expected_sq));

  optim::SGD opt(named, {.lr = 0.1, .momentum = 0.9});
  REQUIRE(opt.parameters().size() == 1);
  CHECK(opt.parameters()[0].first == "embed.weight");
  opt.step();
  ReferenceSGD reference{.momentum = 0.9};
  reference.p = values_of(full);
  reference.step(values_of(g), 0.1);
  CHECK(close(w.local(), block_like(w, tensor_of(reference.p, {6, 2})), 1e-12));
}
