// nn modules under tp_plans: every built-in strategy against the unsharded module on the 1-D world
// mesh (np 1..4), with sizes that divide the mesh and sizes that do not; the communication of
// the Megatron MLP pattern; the registry, the plan report and bad plans.
#include <catch2/catch.hpp>

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/ops.hpp"
#include "nn/layers.hpp"
#include "nn/tp_plan.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <map>

using namespace dtensor;
using nn::Value;

namespace {

Tensor ints(const Shape& shape, uint64_t seed, int64_t low = -3, int64_t high = 4) {
  return random(shape, DType::I64, {.seed = seed, .a = double(low), .b = double(high)}).to(DType::F64);
}

// up -> relu -> down, the block tensor parallelism splits colwise then rowwise.
class MLP : public nn::Module {
 public:
  MLP(int64_t hidden, int64_t inner) : Module("MLP") {
    up_ = add_module("up", std::make_shared<nn::Linear>(hidden, inner, true, DType::F64));
    down_ = add_module("down", std::make_shared<nn::Linear>(inner, hidden, true, DType::F64));
  }

 protected:
  Value forward(const Value& x) override {
    Value h = (*up_)(x);
    h = h.is_distributed() ? Value(relu(h.dtensor())) : Value(relu(h.tensor()));
    return (*down_)(h);
  }

 private:
  std::shared_ptr<nn::Linear> up_, down_;
};

// A model tree with one MLP under "mlp" and its full weights.
struct Model {
  std::shared_ptr<nn::Module> root = std::make_shared<nn::Module>("Root");
  std::shared_ptr<MLP> mlp;
  std::map<std::string, Tensor> weights;

  Model(int64_t hidden, int64_t inner) {
    mlp = root->add_module("mlp", std::make_shared<MLP>(hidden, inner));
    weights = {{"mlp.up.weight", ints({inner, hidden}, 1)},
               {"mlp.up.bias", ints({inner}, 2)},
               {"mlp.down.weight", ints({hidden, inner}, 3)},
               {"mlp.down.bias", ints({hidden}, 4)}};
  }
  nn::SourceLookup sources() const {
    return [this](const std::string& name) { return io::tensor_source(weights.at(name)); };
  }
};

DeviceMesh world_line() { return DeviceMesh::from_world({dtensor::world().size()}); }

Tensor reference_mlp(int64_t hidden, int64_t inner, const Tensor& x) {
  Model m(hidden, inner);
  nn::load_unsharded(*m.root, m.sources());
  return (*m.mlp)(x).tensor();
}

const std::vector<std::pair<int64_t, int64_t>> kSizes = {{8, 12}, {5, 7}, {3, 2}};

}  // namespace

TEST_CASE("colwise then rowwise MLP equals the unsharded MLP with one all_reduce", "[nn][strategies]") {
  for (const auto& [hidden, inner] : kSizes) {
    Model m(hidden, inner);
    nn::TpPlan plan{{{"mlp.up", "colwise"}, {"mlp.down", "rowwise"}}};
    nn::apply_tp_plan(*m.root, plan, world_line(), m.sources());
    Tensor x = ints({4, hidden}, 9);
    CommRecorder recorder;
    Value y = (*m.mlp)(x);
    INFO("hidden " << hidden << " inner " << inner);
    CHECK(equal(y.tensor(), reference_mlp(hidden, inner, x)));
    if (dtensor::world().size() > 1) {
      REQUIRE(recorder.calls().size() == 1);
      CHECK(recorder.calls()[0].kind == CollectiveKind::AllReduce);
    }
    // The weight holds this rank's rows; the bias of the rowwise layer is whole.
    const DTensor& w = m.mlp->find("up")->parameter("weight").dtensor();
    CHECK(w.placements() == Placements{Shard(0)});
    CHECK(w.shape() == Shape{inner, hidden});
    CHECK(m.root->find("mlp.down")->parameter("bias").dtensor().placements() == Placements{Replicate()});
  }
}

TEST_CASE("colwise_rep, rowwise_rep and replicate give the full Linear output", "[nn][strategies]") {
  for (const auto& [in, out] : kSizes) {
    for (const char* strategy : {"colwise_rep", "rowwise_rep", "replicate"}) {
      auto root = std::make_shared<nn::Module>("Root");
      auto fc = root->add_module("fc", std::make_shared<nn::Linear>(in, out, true, DType::F64));
      std::map<std::string, Tensor> w = {{"fc.weight", ints({out, in}, 5)}, {"fc.bias", ints({out}, 6)}};
      nn::apply_tp_plan(*root, nn::TpPlan{{{"fc", strategy}}}, world_line(),
                        [&](const std::string& n) { return io::tensor_source(w.at(n)); });
      Tensor x = ints({3, in}, 7);
      INFO(strategy << " in " << in << " out " << out);
      CHECK(equal((*fc)(x).tensor(), linear(x, w["fc.weight"], w["fc.bias"])));
    }
  }
}

TEST_CASE("local_colwise and local_rowwise under a gather parent", "[nn][strategies]") {
  for (const auto& [hidden, inner] : kSizes) {
    Model m(hidden, inner);
    nn::TpPlan plan{{{"mlp", "gather"}, {"mlp.up", "local_colwise"}, {"mlp.down", "local_rowwise"}}};
    nn::apply_tp_plan(*m.root, plan, world_line(), m.sources());
    // Plain local tensors: this rank's rows of up, columns of down.
    const Value& up = m.root->find("mlp.up")->parameter("weight");
    CHECK_FALSE(up.is_distributed());
    CHECK(up.shape()[1] == hidden);
    Tensor x = ints({4, hidden}, 9);
    CHECK(equal((*m.mlp)(x).tensor(), reference_mlp(hidden, inner, x)));
  }
}

TEST_CASE("Dropout drops the same elements however the tensor is sharded", "[nn][layers]") {
  DeviceMesh mesh = world_line();
  Tensor x = ints({6, 5}, 3, 1, 5);
  nn::Dropout reference(0.5, 42);
  Tensor expected = reference(x).tensor();
  CHECK_FALSE(equal(expected, x));  // something was dropped, the rest scaled
  for (const Placements& p : std::vector<Placements>{{Shard(0)}, {Shard(1)}, {Replicate()}}) {
    nn::Dropout dropout(0.5, 42);
    Value y = dropout(DTensor::distribute(x, mesh, p));
    CHECK(y.dtensor().placements() == p);
    CHECK(equal(y.dtensor().full_tensor(), expected));
  }
}

TEST_CASE("plans: patterns, report, user strategies and bad input", "[nn][plan]") {
  CHECK(nn::pattern_matches("layers.*.q", "layers.3.q"));
  CHECK_FALSE(nn::pattern_matches("layers.*.q", "layers.3.4.q"));
  CHECK_FALSE(nn::pattern_matches("layers.*", "layers"));

  Model m(4, 6);
  nn::TpPlan plan = nn::TpPlan::from_json(R"({"mlp.up": "colwise", "nothing.*": "rowwise"})");
  nn::PlanReport report = nn::apply_tp_plan(*m.root, plan, world_line(), m.sources());
  CHECK(report.unmatched_rules == std::vector<std::string>{"nothing.*"});
  CHECK(report.uncovered_parameters == std::vector<std::string>{"mlp.down.weight", "mlp.down.bias"});
  CHECK_THAT(report.explain, Catch::Contains("mlp.up (Linear): colwise") && Catch::Contains("(S(0))"));

  // Unknown strategy: refused before anything is loaded.
  Model fresh(4, 6);
  CHECK_THROWS_WITH(nn::apply_tp_plan(*fresh.root, nn::TpPlan{{{"mlp.up", "diagonal"}}}, world_line(), fresh.sources()),
                    Catch::Contains("diagonal"));
  CHECK_FALSE(fresh.root->find("mlp.up")->parameter("weight").defined());
  CHECK_THROWS_AS(nn::TpPlan::from_json("{\"a\": 3}"), ValueError);
  CHECK_THROWS_AS(nn::TpPlan::from_json("[1, 2"), ValueError);
  // A number beyond a double's range is nlohmann's out_of_range, not a parse_error (found by
  // fuzz_tp_plan: fuzz/corpus/tp_plan/crash-number-overflow.json).
  CHECK_THROWS_WITH(nn::TpPlan::from_json(R"({"a": 1e400})"), Catch::Contains("not valid JSON"));

  // A checkpoint tensor of the wrong shape names the parameter.
  Model wrong(4, 6);
  wrong.weights["mlp.down.weight"] = ints({4, 5}, 1);
  CHECK_THROWS_WITH(nn::apply_tp_plan(*wrong.root, nn::TpPlan{}, world_line(), wrong.sources()),
                    Catch::Contains("mlp.down.weight"));

  // A user strategy under a new name: the weight replicated, the output doubled.
  struct Doubling : nn::Strategy {
    Value partition(const nn::Module&, const std::string&, const io::TensorSource& source,
                    const DeviceMesh& mesh) const override {
      return nn::read_sharded(source, mesh, {Replicate()});
    }
    Value prepare_input(const Value& x, const nn::Module&, const DeviceMesh& mesh) const override {
      return DTensor::from_local(x.tensor(), mesh, {Replicate()}, x.shape());
    }
    Value prepare_output(const Value& y, const nn::Module&, const DeviceMesh&) const override {
      return mul(y.dtensor(), 2.0).to_local();
    }
  };
  nn::StrategyRegistry registry = nn::StrategyRegistry::global();
  registry.add("doubling", std::make_shared<Doubling>());
  CHECK_THROWS_AS(registry.add("doubling", std::make_shared<Doubling>()), ValueError);
  Model custom(4, 6);
  nn::apply_tp_plan(*custom.root, nn::TpPlan{{{"mlp.*", "doubling"}}}, world_line(), custom.sources(), registry);
  Tensor x = ints({2, 4}, 9);
  Tensor two = Tensor::full({}, 2.0, DType::F64);
  Tensor h = relu(mul(linear(x, custom.weights["mlp.up.weight"], custom.weights["mlp.up.bias"]), two));
  Tensor expected = mul(linear(h, custom.weights["mlp.down.weight"], custom.weights["mlp.down.bias"]), two);
  CHECK(equal((*custom.mlp)(x).tensor(), expected));
}

namespace {

// RMSNorm then the MLP: one transformer sub-block without the residual.
class NormedMLP : public nn::Module {
 public:
  NormedMLP(int64_t hidden, int64_t inner) : Module("NormedMLP") {
    norm_ = add_module("norm", std::make_shared<nn::RMSNorm>(hidden, 1e-6, DType::F64));
    mlp_ = add_module("mlp", std::make_shared<MLP>(hidden, inner));
  }

 protected:
  Value forward(const Value& x) override { return (*mlp_)((*norm_)(x)); }

 private:
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<MLP> mlp_;
};

}  // namespace

TEST_CASE("sequence parallel: one all_gather in, one reduce_scatter out", "[nn][strategies][sp]") {
  DeviceMesh mesh = world_line();
  for (const auto& [hidden, inner] : kSizes) {
    for (int64_t seq : {8, 5}) {
      auto make = [&] { return std::make_shared<NormedMLP>(hidden, inner); };
      std::map<std::string, Tensor> w = {{"norm.weight", ints({hidden}, 8, 1, 3)},
                                         {"mlp.up.weight", ints({inner, hidden}, 1)},
                                         {"mlp.up.bias", ints({inner}, 2)},
                                         {"mlp.down.weight", ints({hidden, inner}, 3)},
                                         {"mlp.down.bias", ints({hidden}, 4)}};
      auto lookup = [&](const std::string& n) { return io::tensor_source(w.at(n)); };
      auto plain_block = make();
      nn::load_unsharded(*plain_block, lookup);
      Tensor x = ints({seq, hidden}, 10);
      Tensor expected = (*plain_block)(x).tensor();

      auto block = make();
      nn::TpPlan plan{{{"norm", "sequence_parallel"}, {"mlp.up", "colwise"}, {"mlp.down", "rowwise_to_sequence"}}};
      nn::apply_tp_plan(*block, plan, mesh, lookup);
      DTensor sharded = DTensor::distribute(x, mesh, {Shard(0)});
      CommRecorder recorder;
      Value y = (*block)(sharded);
      INFO("hidden " << hidden << " inner " << inner << " seq " << seq);
      CHECK(y.dtensor().placements() == Placements{Shard(0)});
      if (mesh.size() > 1) {
        CHECK(recorder.count(CollectiveKind::AllGather) == 1);
        CHECK(recorder.count(CollectiveKind::ReduceScatter) == 1);
        CHECK(recorder.calls().size() == 2);
      }
      CHECK(allclose(y.dtensor().full_tensor(), expected, 1e-12, 1e-12));
    }
  }
}

TEST_CASE("vocab-parallel embedding under rowwise is exact for uneven vocab", "[nn][strategies]") {
  for (int64_t vocab : {7, 3, 8}) {
    auto root = std::make_shared<nn::Module>("Root");
    auto embed = root->add_module("embed", std::make_shared<nn::Embedding>(vocab, 5, DType::F64));
    Tensor table = ints({vocab, 5}, 12);
    nn::apply_tp_plan(*root, nn::TpPlan{{{"embed", "rowwise"}}}, world_line(),
                      [&](const std::string&) { return io::tensor_source(table); });
    CHECK(embed->parameter("weight").dtensor().placements() == Placements{Shard(0)});
    Tensor ids = random({2, 6}, DType::I64, {.seed = 4, .a = 0, .b = double(vocab)});
    CHECK(equal((*embed)(ids).tensor(), embedding(table, ids)));
  }
}
