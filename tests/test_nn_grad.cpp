// nn modules train under every registered strategy: after one backward, the gradients of the
// weights, biases and the input at np 1..4 equal the unsharded module's (tests/nn_grad_check.hpp),
// with sizes that divide the TP size and sizes that do not; the collectives the backward of the
// Megatron MLP and of the sequence-parallel block run.
#include "nn_grad_check.hpp"

#include "nn/layers.hpp"

using namespace dtensor;
using namespace dtensor::testing;
using nn::Value;

namespace {

// Runs its children in the order they were added.
class Sequential : public nn::Module {
 public:
  Sequential() : Module("Sequential") {}
  template <typename M>
  Sequential& then(const std::string& name, std::shared_ptr<M> child) {
    steps_.push_back(add_module(name, std::move(child)));
    return *this;
  }

 protected:
  Value forward(const Value& x) override {
    Value y = x;
    for (const auto& step : steps_) y = (*step)(y);
    return y;
  }

 private:
  std::vector<std::shared_ptr<nn::Module>> steps_;
};

// (in, out) and (hidden, inner): dividing 1, 2 and 4, dividing none of 2..4, smaller than np 4.
const std::vector<std::pair<int64_t, int64_t>> kSizes = {{8, 12}, {5, 7}, {3, 2}};
constexpr int64_t kRows = 5;

std::shared_ptr<nn::Linear> linear_f64(int64_t in, int64_t out) {
  return std::make_shared<nn::Linear>(in, out, true, DType::F64);
}

BlockOf last_dim_chunk() {
  return [](const Tensor& full) { return rank_chunk(full, -1); };
}

GradCase one_linear(int64_t in, int64_t out, const std::string& strategy) {
  GradCase c;
  c.make = [=] {
    auto tree = std::make_shared<Sequential>();
    tree->then("fc", linear_f64(in, out));
    return tree;
  };
  c.weights = {{"fc.weight", ints({out, in}, 1)}, {"fc.bias", ints({out}, 2)}};
  c.plan = nn::TpPlan{{{"fc", strategy}}};
  c.x = ints({kRows, in}, 3);
  c.cotangent = ints({kRows, out}, 4);
  return c;
}

GradCase mlp(int64_t hidden, int64_t inner, nn::TpPlan plan) {
  GradCase c;
  c.make = [=] {
    auto tree = std::make_shared<Sequential>();
    tree->then("up", linear_f64(hidden, inner)).then("act", std::make_shared<nn::GELU>());
    tree->then("down", linear_f64(inner, hidden));
    return tree;
  };
  c.weights = {{"up.weight", ints({inner, hidden}, 1)},
               {"up.bias", ints({inner}, 2)},
               {"down.weight", ints({hidden, inner}, 3)},
               {"down.bias", ints({hidden}, 4)}};
  c.plan = std::move(plan);
  c.x = ints({kRows, hidden}, 5);
  c.cotangent = ints({kRows, hidden}, 6);
  c.tolerance = 1e-12;  // gelu
  return c;
}

}  // namespace

TEST_CASE("a Linear under every Linear strategy gets the unsharded gradients", "[nn][grad]") {
  for (const auto& [in, out] : kSizes) {
    for (const char* strategy : {"colwise", "colwise_rep", "rowwise", "rowwise_rep", "rowwise_to_sequence", "replicate",
                                 "sequence_parallel", "local", "local_colwise", "local_rowwise"}) {
      GradCase c = one_linear(in, out, strategy);
      const std::string s = strategy;
      // What each strategy's forward takes and gives (nn/strategies.cpp).
      if (s == "colwise" || s == "local_colwise") c.output_block = last_dim_chunk();
      if (s == "rowwise" || s == "rowwise_to_sequence" || s == "local_rowwise") c.input_block = last_dim_chunk();
      if (s == "sequence_parallel") c.input_placements = Placements{Shard(0)};
      if (s == "local_rowwise") c.first_rank_only = {"fc.bias"};
      INFO(strategy << " in " << in << " out " << out << " np " << world().size());
      check_gradients(c);
    }
  }
}

namespace {

// A user's strategy written with DTensor's methods only: rows split, the input wrapped as
// replicated, the output gathered. It trains with nothing autograd-specific written.
class UserRowSplit : public nn::Strategy {
 public:
  Value partition(const nn::Module&, const std::string&, const io::TensorSource& source,
                  const DeviceMesh& mesh) const override {
    return nn::read_sharded(source, mesh, {Shard(0)});
  }
  Value prepare_input(const Value& x, const nn::Module&, const DeviceMesh& mesh) const override {
    return DTensor::from_local(x.tensor(), mesh, {Replicate()}, x.shape());
  }
  Value prepare_output(const Value& y, const nn::Module&, const DeviceMesh&) const override {
    return y.dtensor().redistribute({Replicate()}).to_local();
  }
};

}  // namespace

TEST_CASE("a user strategy written with the DTensor methods trains", "[nn][grad]") {
  nn::StrategyRegistry registry = nn::StrategyRegistry::global();
  registry.add("user_row_split", std::make_shared<UserRowSplit>());
  for (const auto& [in, out] : kSizes) {
    GradCase c = one_linear(in, out, "user_row_split");
    c.registry = &registry;
    INFO("in " << in << " out " << out << " np " << world().size());
    const std::vector<CommRecorder::Call> calls = check_gradients(c);
    // The gathered output's gradient is sliced locally; the replicated input's P(sum) gradient
    // is all-reduced once.
    if (world().size() > 1) {
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].kind == CollectiveKind::AllReduce);
    }
  }
}

TEST_CASE("colwise then rowwise MLP: the backward runs one all_reduce, the input's gradient", "[nn][grad]") {
  for (const auto& [hidden, inner] : kSizes) {
    GradCase c = mlp(hidden, inner, nn::TpPlan{{{"up", "colwise"}, {"down", "rowwise"}}});
    INFO("hidden " << hidden << " inner " << inner << " np " << world().size());
    const std::vector<CommRecorder::Call> calls = check_gradients(c);
    if (world().size() > 1) {
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].kind == CollectiveKind::AllReduce);
      CHECK(calls[0].bytes == uint64_t(kRows * hidden) * sizeof(double));
    }
  }
}

TEST_CASE("local_colwise and local_rowwise under a gather parent train", "[nn][grad]") {
  for (const auto& [hidden, inner] : kSizes) {
    GradCase c = mlp(hidden, inner, {});
    c.make = [=, make = c.make] {
      auto tree = std::make_shared<Sequential>();
      tree->then("mlp", make());
      return tree;
    };
    std::map<std::string, Tensor> prefixed;
    for (const auto& [name, w] : c.weights) prefixed["mlp." + name] = w;
    c.weights = prefixed;
    c.plan = nn::TpPlan{{{"mlp", "gather"}, {"mlp.up", "local_colwise"}, {"mlp.down", "local_rowwise"}}};
    c.first_rank_only = {"mlp.down.bias"};
    INFO("hidden " << hidden << " inner " << inner);
    check_gradients(c);
  }
}

TEST_CASE("sequence-parallel block: the backward runs one all_gather and one reduce_scatter", "[nn][grad][sp]") {
  for (const auto& [hidden, inner] : kSizes) {
    for (int64_t seq : {8, 5}) {
      GradCase c = mlp(hidden, inner, {});
      c.make = [=] {
        auto tree = std::make_shared<Sequential>();
        tree->then("norm", std::make_shared<nn::RMSNorm>(hidden, 1e-6, DType::F64));
        tree->then("up", linear_f64(hidden, inner)).then("act", std::make_shared<nn::SiLU>());
        tree->then("down", linear_f64(inner, hidden));
        return tree;
      };
      c.weights["norm.weight"] = ints({hidden}, 7, 1, 3);
      c.plan = nn::TpPlan{{{"norm", "sequence_parallel"}, {"up", "colwise"}, {"down", "rowwise_to_sequence"}}};
      c.x = ints({seq, hidden}, 8);
      c.cotangent = ints({seq, hidden}, 9);
      c.input_placements = Placements{Shard(0)};
      INFO("hidden " << hidden << " inner " << inner << " seq " << seq);
      const std::vector<CommRecorder::Call> calls = check_gradients(c);
      if (world().size() > 1) {
        // The activations' gradients: the reverse of the forward's all_gather and reduce_scatter.
        CHECK(count(calls, CollectiveKind::AllGather) == 1);
        CHECK(count(calls, CollectiveKind::ReduceScatter) == 1);
        // The norm weight is replicated beside sharded rows: its P(sum) gradient is reduced once.
        CHECK(count(calls, CollectiveKind::AllReduce) == 1);
        CHECK(calls.size() == 3);
      }
    }
  }
}

namespace {

// A query projection feeding an output projection over the same heads (attention without the
// attention), so colwise / rowwise split whole heads.
GradCase head_pair(const nn::AttentionHeads& heads, const std::string& q_strategy, const std::string& o_strategy) {
  const int64_t hidden = 4, width = heads.num_heads * heads.head_dim;
  GradCase c;
  c.make = [=] {
    auto tree = std::make_shared<Sequential>();
    auto q = linear_f64(hidden, width);
    auto o = linear_f64(width, hidden);
    q->set_heads(nn::HeadRole::Query, heads);
    o->set_heads(nn::HeadRole::Output, heads);
    tree->then("q", q).then("o", o);
    return tree;
  };
  c.weights = {{"q.weight", ints({width, hidden}, 1)},
               {"q.bias", ints({width}, 2)},
               {"o.weight", ints({hidden, width}, 3)},
               {"o.bias", ints({hidden}, 4)}};
  c.plan = nn::TpPlan{{{"q", q_strategy}, {"o", o_strategy}}};
  c.x = ints({kRows, hidden}, 5);
  c.cotangent = ints({kRows, hidden}, 6);
  c.first_rank_only = {"o.bias"};  // only where the heads split unevenly is it plain
  return c;
}

}  // namespace

TEST_CASE("projections split by whole heads train, even and uneven head splits", "[nn][grad][heads]") {
  for (int64_t num_heads : {4, 5, 6}) {
    const nn::AttentionHeads heads{num_heads, num_heads, 2};
    INFO("heads " << num_heads << " np " << world().size());
    check_gradients(head_pair(heads, "colwise", "rowwise"));
    GradCase local = head_pair(heads, "local_colwise", "local_rowwise");
    local.make = [make = local.make] {
      auto tree = std::make_shared<Sequential>();
      tree->then("attn", make());
      return tree;
    };
    std::map<std::string, Tensor> prefixed;
    for (const auto& [name, w] : local.weights) prefixed["attn." + name] = w;
    local.weights = prefixed;
    local.plan = nn::TpPlan{{{"attn", "gather"}, {"attn.q", "local_colwise"}, {"attn.o", "local_rowwise"}}};
    local.first_rank_only = {"attn.o.bias"};
    check_gradients(local);
  }
}

namespace {

// gate_up (packed [gate; up]) -> silu(gate) * up -> down, with the autograd ops between modules.
class SwiGLU : public nn::Module {
 public:
  SwiGLU(int64_t hidden, int64_t inner) : Module("SwiGLU") {
    gate_up_ = add_module("gate_up", linear_f64(hidden, 2 * inner));
    down_ = add_module("down", linear_f64(inner, hidden));
  }

 protected:
  Value forward(const Value& x) override {
    std::vector<Tensor> halves = ag::chunk((*gate_up_)(x).tensor(), 2, -1);
    return (*down_)(ag::mul(ag::silu(halves[0]), halves[1]));
  }

 private:
  std::shared_ptr<nn::Linear> gate_up_, down_;
};

GradCase packed_pair(int64_t hidden, int64_t half, nn::TpPlan plan) {
  GradCase c;
  c.make = [=] {
    auto pair = std::make_shared<Sequential>();
    pair->then("up", linear_f64(hidden, 2 * half)).then("proj", linear_f64(2 * half, hidden));
    auto tree = std::make_shared<Sequential>();
    tree->then("pair", pair);
    return tree;
  };
  c.weights = {{"pair.up.weight", ints({2 * half, hidden}, 1)},
               {"pair.up.bias", ints({2 * half}, 2)},
               {"pair.proj.weight", ints({hidden, 2 * half}, 3)},
               {"pair.proj.bias", ints({hidden}, 4)}};
  c.plan = std::move(plan);
  c.x = ints({kRows, hidden}, 5);
  c.cotangent = ints({kRows, hidden}, 6);
  c.first_rank_only = {"pair.proj.bias"};
  return c;
}

}  // namespace

TEST_CASE("packed strategies train: packed_colwise, packed_rowwise, local_packed_rowwise", "[nn][grad][packed]") {
  for (int64_t inner : {8, 7, 2}) {
    INFO("inner " << inner << " np " << world().size());
    GradCase swiglu;
    swiglu.make = [=] { return std::make_shared<SwiGLU>(4, inner); };
    swiglu.weights = {{"gate_up.weight", ints({2 * inner, 4}, 1)},
                      {"gate_up.bias", ints({2 * inner}, 2)},
                      {"down.weight", ints({4, inner}, 3)},
                      {"down.bias", ints({4}, 4)}};
    swiglu.plan = nn::TpPlan{{{"gate_up", "packed_colwise"}, {"down", "rowwise"}}};
    swiglu.x = ints({kRows, 4}, 5);
    swiglu.cotangent = ints({kRows, 4}, 6);
    swiglu.tolerance = 1e-12;
    check_gradients(swiglu);

    check_gradients(
        packed_pair(4, inner, nn::TpPlan{{{"pair.up", "packed_colwise"}, {"pair.proj", "packed_rowwise"}}}));
    check_gradients(packed_pair(
        4, inner,
        nn::TpPlan{{{"pair", "gather"}, {"pair.up", "packed_colwise"}, {"pair.proj", "local_packed_rowwise"}}}));
    // packed_rowwise slicing a replicated DTensor input: the input's gradient is the ranks' sum.
    GradCase sliced = packed_pair(4, inner, nn::TpPlan{{{"pair.proj", "packed_rowwise"}}});
    sliced.make = [=] {
      auto tree = std::make_shared<Sequential>();
      tree->then("pair", linear_f64(2 * inner, 4));
      return tree;
    };
    sliced.weights = {{"pair.weight", ints({4, 2 * inner}, 3)}, {"pair.bias", ints({4}, 4)}};
    sliced.plan = nn::TpPlan{{{"pair", "packed_rowwise"}}};
    sliced.x = ints({kRows, 2 * inner}, 7);
    sliced.input_placements = Placements{Replicate()};
    sliced.first_rank_only = {"pair.bias"};
    check_gradients(sliced);
  }
}

TEST_CASE("every registered strategy has a gradient case in this suite", "[nn][grad]") {
  // A strategy registered later must bring its own case above. moe_tp_experts applies to Experts
  // modules only (nn/experts.hpp); their training is checked with the MoE models that hold them.
  const std::set<std::string> covered = {
      "colwise",        "colwise_rep",          "rowwise",       "rowwise_rep", "rowwise_to_sequence", "replicate",
      "local_colwise",  "local_rowwise",        "local",         "gather",      "sequence_parallel",   "packed_colwise",
      "packed_rowwise", "local_packed_rowwise", "moe_tp_experts"};
  for (const std::string& name : nn::StrategyRegistry::global().names()) {
    INFO(name);
    CHECK(covered.count(name) == 1);
  }
}
