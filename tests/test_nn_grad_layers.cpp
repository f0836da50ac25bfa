// Layers and the DTensor methods under autograd: the norms and activations train whole, replicated
// and sequence-sharded; Dropout drops the same elements under every sharding and its gradient is
// its mask times the scale, regenerated for the gradient's own block; DTensor's redistribute /
// from_local / to_local / full_tensor record; inference records nothing.
#include "nn_grad_check.hpp"

#include "nn/layers.hpp"

using namespace dtensor;
using namespace dtensor::testing;
using nn::Value;

namespace {

// One layer under "layer" in a root that calls it.
class Holder : public nn::Module {
 public:
  explicit Holder(std::shared_ptr<nn::Module> layer) : Module("Holder") { layer_ = add_module("layer", layer); }

 protected:
  Value forward(const Value& x) override { return (*layer_)(x); }

 private:
  std::shared_ptr<nn::Module> layer_;
};

constexpr int64_t kHidden = 6;

GradCase layer_case(const std::string& type, const std::string& strategy, int64_t rows) {
  GradCase c;
  c.make = [type] {
    std::shared_ptr<nn::Module> layer;
    if (type == "RMSNorm") layer = std::make_shared<nn::RMSNorm>(kHidden, 1e-6, DType::F64);
    if (type == "LayerNorm") layer = std::make_shared<nn::LayerNorm>(kHidden, 1e-5, DType::F64);
    if (type == "SiLU") layer = std::make_shared<nn::SiLU>();
    if (type == "GELU") layer = std::make_shared<nn::GELU>();
    return std::make_shared<Holder>(layer);
  };
  if (type == "RMSNorm" || type == "LayerNorm") c.weights["layer.weight"] = ints({kHidden}, 1, 1, 4);
  if (type == "LayerNorm") c.weights["layer.bias"] = ints({kHidden}, 2);
  if (!strategy.empty()) c.plan = nn::TpPlan{{{"layer", strategy}}};
  if (strategy == "sequence_parallel") c.input_placements = Placements{Shard(0)};
  c.x = ints({rows, kHidden}, 3);
  c.cotangent = ints({rows, kHidden}, 4);
  c.tolerance = 1e-12;
  return c;
}

}  // namespace

TEST_CASE("RMSNorm, LayerNorm, SiLU and GELU train whole, replicated and sequence-parallel", "[nn][grad]") {
  for (const char* type : {"RMSNorm", "LayerNorm", "SiLU", "GELU"}) {
    for (const char* strategy : {"", "replicate", "sequence_parallel"}) {
      for (int64_t rows : {8, 5, 3}) {
        INFO(type << " under '" << strategy << "' rows " << rows << " np " << world().size());
        check_gradients(layer_case(type, strategy, rows));
      }
    }
  }
}

TEST_CASE("Dropout drops alike under every sharding; its gradient is mask * scale", "[nn][grad][dropout]") {
  const DeviceMesh mesh = world_line();
  const double p = 0.5;                    // a scale of 2: every product below is exact
  const Tensor x = ints({7, 5}, 3, 1, 5);  // no zeros, so y / x reads the factor back
  const Tensor r = ints({7, 5}, 4);
  nn::Dropout whole(p, 42);
  Tensor leaf = x.clone();
  ag::set_requires_grad(leaf);
  const Tensor y = whole(leaf).tensor();
  ag::backward(ag::sum(ag::mul(y, r)));
  // Each element is dropped or scaled by 1 / (1 - p); some of each.
  const Tensor factor = div(ag::detach(y), x);
  const Tensor dropped = eq(factor, Tensor::zeros({}, DType::F64)).to(DType::F64);
  const Tensor kept = eq(factor, Tensor::full({}, 1.0 / (1.0 - p), DType::F64)).to(DType::F64);
  CHECK(equal(add(dropped, kept), Tensor::full(x.shape(), 1.0, DType::F64)));
  CHECK(sum(dropped).item<double>() > 0);
  CHECK(sum(kept).item<double>() > 0);
  CHECK(equal(ag::grad(leaf), mul(r, factor)));

  for (const Placements& placements : std::vector<Placements>{{Shard(0)}, {Shard(1)}, {Replicate()}}) {
    INFO(placements_str(placements) << " np " << mesh.size());
    nn::Dropout dropout(p, 42);
    DTensor dx = DTensor::distribute(x, mesh, placements);
    ag::set_requires_grad(dx);
    Value dy = dropout(dx);
    CHECK(dy.dtensor().placements() == placements);
    CHECK(equal(dy.dtensor().full_tensor(), y));
    // The loss reads the output in another layout than the forward's, so the gradient reaches
    // the dropout node in that layout: the mask is regenerated for the gradient's block.
    DTensor v = DTensor::distribute(r, mesh, {Shard(placements[0].is_shard(0) ? 1 : 0)});
    ag::backward(ag::sum(ag::mul(dy.dtensor(), v)));
    CHECK(equal(ag::grad(dx).full_tensor(), ag::grad(leaf)));
  }
}

TEST_CASE("Dropout: a fresh mask per call, none in eval mode", "[nn][dropout]") {
  const Tensor x = ints({6, 6}, 5, 1, 5);
  nn::Dropout dropout(0.5, 7);
  const Tensor first = dropout(x).tensor();
  const Tensor second = dropout(x).tensor();
  CHECK_FALSE(equal(first, second));
  dropout.train(false);
  Tensor leaf = x.clone();
  ag::set_requires_grad(leaf);
  Value same = dropout(leaf);
  CHECK(same.tensor().data<double>() == leaf.data<double>());
  CHECK(ag::grad_fn(same.tensor()) == nullptr);
}

TEST_CASE("DTensor's redistribute, from_local, to_local and full_tensor record a graph", "[nn][grad][methods]") {
  const DeviceMesh mesh = world_line();
  const Tensor x = ints({5, 3}, 11);
  const Tensor r = ints({5, 3}, 12);
  DTensor dx = DTensor::distribute(x, mesh, {Shard(0)});
  ag::set_requires_grad(dx);
  // S(0) -> S(1) -> local block -> back to a DTensor -> the whole tensor.
  DTensor moved = dx.redistribute({Shard(1)});
  CHECK(ag::grad_fn(moved) != nullptr);
  Tensor block = moved.to_local();
  CHECK(ag::requires_grad(block));
  DTensor again = DTensor::from_local(ag::mul(block, 3.0), mesh, {Shard(1)}, x.shape());
  Tensor whole = again.full_tensor();
  ag::backward(ag::sum(ag::mul(whole, r)));
  DTensor grad = ag::grad(dx);
  CHECK(grad.placements() == Placements{Shard(0)});
  CHECK(equal(grad.full_tensor(), mul(r, 3.0)));

  // A local leaf through from_local: its gradient is its block's.
  Tensor local = rank_chunk(x, 0);
  ag::set_requires_grad(local);
  Tensor gathered = DTensor::from_local(local, mesh, {Shard(0)}, x.shape()).full_tensor();
  ag::backward(ag::sum(ag::mul(gathered, r)));
  CHECK(equal(ag::grad(local), rank_chunk(r, 0)));

  // Under NoGradGuard, or without a gradient wanted, the methods leave no autograd state.
  ag::NoGradGuard no_grad;
  CHECK(dx.redistribute({Replicate()}).autograd_meta() == nullptr);
  CHECK(dx.to_local().autograd_meta() == nullptr);
  CHECK(DTensor::from_local(local, mesh, {Shard(0)}, x.shape()).autograd_meta() == nullptr);
}

namespace {

// An embedding, a sequence-parallel norm, a Megatron MLP and dropout: the inference path of a
// sharded model.
class SmallModel : public nn::Module {
 public:
  SmallModel() : Module("SmallModel") {
    embed_ = add_module("embed", std::make_shared<nn::Embedding>(11, kHidden, DType::F64));
    norm_ = add_module("norm", std::make_shared<nn::LayerNorm>(kHidden, 1e-5, DType::F64));
    up_ = add_module("up", std::make_shared<nn::Linear>(kHidden, 8, true, DType::F64));
    act_ = add_module("act", std::make_shared<nn::SiLU>());
    down_ = add_module("down", std::make_shared<nn::Linear>(8, kHidden, true, DType::F64));
    drop_ = add_module("drop", std::make_shared<nn::Dropout>(0.1, 3));
  }

 protected:
  Value forward(const Value& ids) override { return (*drop_)((*down_)((*act_)((*up_)((*norm_)((*embed_)(ids)))))); }

 private:
  std::shared_ptr<nn::Module> embed_, norm_, up_, act_, down_, drop_;
};

bool has_autograd_state(const Value& v) {
  return v.is_distributed() ? v.dtensor().autograd_meta() != nullptr : v.tensor().autograd_meta() != nullptr;
}

}  // namespace

TEST_CASE("inference records nothing: no autograd state on outputs", "[nn][grad][inference]") {
  const DeviceMesh mesh = world_line();
  std::map<std::string, Tensor> w = {{"embed.weight", ints({11, kHidden}, 1)},
                                     {"norm.weight", ints({kHidden}, 2)},
                                     {"norm.bias", ints({kHidden}, 3)},
                                     {"up.weight", ints({8, kHidden}, 4)},
                                     {"up.bias", ints({8}, 5)},
                                     {"down.weight", ints({kHidden, 8}, 6)},
                                     {"down.bias", ints({kHidden}, 7)}};
  auto lookup = [&](const std::string& n) { return io::tensor_source(w.at(n)); };
  const Tensor ids = random({2, 5}, DType::I64, {.seed = 8, .a = 0, .b = 11});
  for (const bool sharded : {false, true}) {
    SmallModel block;
    if (sharded) {
      nn::TpPlan plan{{{"embed", "rowwise"}, {"norm", "replicate"}, {"up", "colwise"}, {"down", "rowwise"}}};
      nn::apply_tp_plan(block, plan, mesh, lookup);
    } else {
      nn::load_unsharded(block, lookup);
    }
    INFO((sharded ? "sharded" : "whole"));
    CHECK_FALSE(has_autograd_state(block(ids)));
    // Parameters that require a gradient record nothing under NoGradGuard either.
    block.requires_grad_();
    ag::NoGradGuard no_grad;
    CHECK_FALSE(has_autograd_state(block(ids)));
  }
}

TEST_CASE("Embedding trains whole, replicated, hidden-split and vocab-parallel", "[nn][grad][embedding]") {
  for (int64_t vocab : {7, 3, 8}) {
    for (const char* strategy : {"", "replicate", "colwise", "rowwise"}) {
      GradCase c;
      c.make = [vocab] { return std::make_shared<Holder>(std::make_shared<nn::Embedding>(vocab, 5, DType::F64)); };
      c.weights = {{"layer.weight", ints({vocab, 5}, 1)}};
      if (*strategy != '\0') c.plan = nn::TpPlan{{{"layer", strategy}}};
      // Repeated ids: a row read twice gets the sum of both gradients.
      c.x = random({3, 4}, DType::I64, {.seed = 2, .a = 0, .b = double(vocab)});
      c.cotangent = ints({3, 4, 5}, 3);
      if (std::string(strategy) == "colwise") c.output_block = [](const Tensor& full) { return rank_chunk(full, -1); };
      INFO(strategy << " vocab " << vocab << " np " << world().size());
      const std::vector<CommRecorder::Call> calls = check_gradients(c);
      // A vocab-parallel table's gradient is each rank's own rows: nothing is communicated.
      if (std::string(strategy) == "rowwise") CHECK(calls.empty());
    }
  }
}
