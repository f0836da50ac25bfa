// Packed-weight and mixture-of-experts strategies against the unsharded modules on the 1-D world
// mesh (np 1..4): packed_colwise, packed_rowwise, local_packed_rowwise and moe_tp_experts, with an
// intermediate size that divides the mesh, one that does not, and one that leaves ranks empty;
// the communication each costs; the experts computation against a token-by-token reference; and
// bad routing ids and bad packed shapes.
#include <catch2/catch.hpp>

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/ops.hpp"
#include "nn/experts.hpp"
#include "nn/tp_plan.hpp"
#include "placements/sharding.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <map>

using namespace dtensor;
using nn::Value;

namespace {

Tensor ints(const Shape& shape, uint64_t seed, int64_t low = -3, int64_t high = 4) {
  return random(shape, DType::I64, {.seed = seed, .a = double(low), .b = double(high)}).to(DType::F64);
}

DeviceMesh world_line() { return DeviceMesh::from_world({dtensor::world().size()}); }

using Weights = std::map<std::string, Tensor>;
nn::SourceLookup lookup(const Weights& w) {
  return [&w](const std::string& name) { return io::tensor_source(w.at(name)); };
}

// Intermediate sizes: divisible by 1, 2 and 4; by none of 2..4; smaller than the mesh at np 4.
const std::vector<int64_t> kIntermediate = {8, 7, 2};
constexpr int64_t kHidden = 4, kExperts = 3, kTopK = 2, kTokens = 5;

// Rows [r0, r0 + n) of each half of a packed [gate; up] along `dim`, as a rank should hold them.
Tensor packed_rows(const Tensor& full, int64_t dim, int64_t r0, int64_t n) {
  const int64_t half = full.size(dim) / 2;
  return cat({full.narrow(dim, r0, n), full.narrow(dim, half + r0, n)}, dim);
}

// gate_up (packed [gate; up]) -> silu(gate) * up -> down: Llama's MLP with its gate and up fused.
class SwiGLU : public nn::Module {
 public:
  SwiGLU(int64_t hidden, int64_t inner) : Module("SwiGLU") {
    gate_up_ = add_module("gate_up", std::make_shared<nn::Linear>(hidden, 2 * inner, true, DType::F64));
    down_ = add_module("down", std::make_shared<nn::Linear>(inner, hidden, true, DType::F64));
  }

 protected:
  Value forward(const Value& x) override {
    // Under packed_colwise the output is this rank's [gate_r | up_r]: the same split applies.
    std::vector<Tensor> halves = chunk((*gate_up_)(x).tensor(), 2, -1);
    return (*down_)(mul(silu(halves[0]), halves[1]));
  }

 private:
  std::shared_ptr<nn::Linear> gate_up_, down_;
};

Weights swiglu_weights(int64_t hidden, int64_t inner) {
  return {{"gate_up.weight", ints({2 * inner, hidden}, 1)},
          {"gate_up.bias", ints({2 * inner}, 2)},
          {"down.weight", ints({hidden, inner}, 3)},
          {"down.bias", ints({hidden}, 4)}};
}

// up (packed output [a; b]) feeding proj, whose input dim is packed the same way.
class PackedPair : public nn::Module {
 public:
  PackedPair(int64_t hidden, int64_t half) : Module("PackedPair") {
    up_ = add_module("up", std::make_shared<nn::Linear>(hidden, 2 * half, true, DType::F64));
    proj_ = add_module("proj", std::make_shared<nn::Linear>(2 * half, hidden, true, DType::F64));
  }

 protected:
  Value forward(const Value& x) override { return (*proj_)((*up_)(x)); }

 private:
  std::shared_ptr<nn::Linear> up_, proj_;
};

}  // namespace

TEST_CASE("packed gate_up: SwiGLU under packed_colwise + rowwise equals the unsharded MLP", "[nn][packed]") {
  const DeviceMesh mesh = world_line();
  for (int64_t inner : kIntermediate) {
    const Weights w = swiglu_weights(kHidden, inner);
    SwiGLU reference(kHidden, inner);
    nn::load_unsharded(reference, lookup(w));
    const Tensor x = ints({kTokens, kHidden}, 9);
    const Tensor expected = reference(x).tensor();

    SwiGLU mlp(kHidden, inner);
    nn::apply_tp_plan(mlp, nn::TpPlan{{{"gate_up", "packed_colwise"}, {"down", "rowwise"}}}, mesh, lookup(w));
    // Each rank holds [gate_r; up_r] (plain: a Shard cannot describe it), torch.chunk rows of I.
    const ChunkSpan span = chunk_span(inner, mesh.size(), mesh.coordinate()[0]);
    const Value& gate_up = mlp.find("gate_up")->parameter("weight");
    CHECK_FALSE(gate_up.is_distributed());
    CHECK(equal(gate_up.tensor(), packed_rows(w.at("gate_up.weight"), 0, span.offset, span.size)));
    CHECK(equal(mlp.find("gate_up")->parameter("bias").tensor(),
                packed_rows(w.at("gate_up.bias"), 0, span.offset, span.size)));

    CommRecorder recorder;
    const Tensor y = mlp(x).tensor();
    INFO("inner " << inner << " np " << mesh.size());
    CHECK(allclose(y, expected, 1e-12, 1e-12));
    if (mesh.size() > 1) {
      REQUIRE(recorder.calls().size() == 1);
      CHECK(recorder.calls()[0].kind == CollectiveKind::AllReduce);
    }
  }
}

TEST_CASE("packed_rowwise and local_packed_rowwise take the packed slice of their input", "[nn][packed]") {
  const DeviceMesh mesh = world_line();
  for (int64_t half : kIntermediate) {
    const Weights w = {{"up.weight", ints({2 * half, kHidden}, 5)},
                       {"up.bias", ints({2 * half}, 6)},
                       {"proj.weight", ints({kHidden, 2 * half}, 7)},
                       {"proj.bias", ints({kHidden}, 8)}};
    const Tensor x = ints({kTokens, kHidden}, 10);
    const Tensor expected =
        linear(linear(x, w.at("up.weight"), w.at("up.bias")), w.at("proj.weight"), w.at("proj.bias"));
    INFO("half " << half << " np " << mesh.size());

    // Integer data: every sum is exact, however the ranks split it.
    PackedPair pair(kHidden, half);
    nn::apply_tp_plan(pair, nn::TpPlan{{{"up", "packed_colwise"}, {"proj", "packed_rowwise"}}}, mesh, lookup(w));
    {
      CommRecorder recorder;
      CHECK(equal(pair(x).tensor(), expected));
      if (mesh.size() > 1) CHECK(recorder.calls().size() == 1);
    }
    // The bias is added once: whole on the first rank, zeros on the others.
    const Tensor& bias = pair.find("proj")->parameter("bias").tensor();
    CHECK(equal(bias, mesh.coordinate()[0] == 0 ? w.at("proj.bias") : Tensor::zeros({kHidden}, DType::F64)));

    // A replicated DTensor input is sliced into this rank's packed columns without communication.
    const Tensor h = linear(x, w.at("up.weight"), w.at("up.bias"));
    nn::Module& proj = *pair.find("proj");
    CHECK(equal(proj(DTensor::from_local(h, mesh, {Replicate()}, h.shape())).tensor(), expected));

    // local_packed_rowwise: a partial sum until the parent gathers it.
    auto root = std::make_shared<nn::Module>("Root");
    auto local_pair = root->add_module("pair", std::make_shared<PackedPair>(kHidden, half));
    Weights prefixed;
    for (const auto& [name, t] : w) prefixed["pair." + name] = t;
    nn::TpPlan plan{{{"pair", "gather"}, {"pair.up", "packed_colwise"}, {"pair.proj", "local_packed_rowwise"}}};
    nn::apply_tp_plan(*root, plan, mesh, lookup(prefixed));
    CommRecorder recorder;
    CHECK(equal((*local_pair)(x).tensor(), expected));
    if (mesh.size() > 1) CHECK(recorder.calls().size() == 1);
  }
}

namespace {

// out[t] = sum_s w[t, s] * down_e(silu(gate_e x_t) * up_e x_t), e = ids[t, s], token by token.
Tensor reference_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
                         const Tensor& down) {
  const int64_t inner = down.size(2);
  Tensor out = Tensor::zeros(x.shape(), x.dtype());
  for (int64_t t = 0; t < x.size(0); ++t) {
    Tensor row = x.narrow(0, t, 1);
    for (int64_t s = 0; s < ids.size(1); ++s) {
      const int64_t e = ids.select(0, t).select(0, s).item<int64_t>();
      const Tensor gu = linear(row, gate_up.select(0, e));
      const Tensor act = mul(silu(gu.narrow(1, 0, inner)), gu.narrow(1, inner, inner));
      const Tensor y = mul(linear(act, down.select(0, e)), weights.select(0, t).select(0, s));
      out.narrow(0, t, 1).copy_from(add(out.narrow(0, t, 1), y));
    }
  }
  return out;
}

Weights moe_weights(int64_t inner) {
  return {{"moe.gate.weight", ints({kExperts, kHidden}, 11)},
          {"moe.experts.gate_up", ints({kExperts, 2 * inner, kHidden}, 12)},
          {"moe.experts.down", ints({kExperts, kHidden, inner}, 13)}};
}

struct MoEModel {
  std::shared_ptr<nn::Module> root = std::make_shared<nn::Module>("Root");
  std::shared_ptr<nn::SparseMoE> moe;
  explicit MoEModel(int64_t inner) {
    moe = root->add_module("moe", std::make_shared<nn::SparseMoE>(kExperts, kTopK, kHidden, inner, DType::F64));
  }
};

}  // namespace

TEST_CASE("Experts: grouped per-expert products equal the token-by-token reference", "[nn][moe]") {
  for (int64_t inner : kIntermediate) {
    const Weights w = moe_weights(inner);
    nn::Experts experts(kExperts, kHidden, inner, DType::F64);
    nn::load_unsharded(experts, [&](const std::string& n) { return io::tensor_source(w.at("moe.experts." + n)); });
    const Tensor x = ints({kTokens, kHidden}, 14);
    // Expert 2 gets no token; expert 0 most; integer routing weights.
    const Tensor ids = Tensor::from_vector<int64_t>({0, 1, 1, 0, 0, 1, 1, 0, 0, 1}, {kTokens, kTopK});
    const Tensor weights = ints({kTokens, kTopK}, 15, 1, 4);
    const Tensor expected = reference_experts(x, ids, weights, w.at("moe.experts.gate_up"), w.at("moe.experts.down"));
    CHECK(allclose(experts.route(x, ids, weights).tensor(), expected, 1e-12, 1e-12));
    CHECK(allclose(experts.route(x, ids.to(DType::I32), weights).tensor(), expected, 1e-12, 1e-12));
  }
}

TEST_CASE("Experts: skewed, gapped, single-expert and empty routings, whole and under moe_tp_experts", "[nn][moe]") {
  // Each routing takes another batching: one expert for all tokens (a batch of one expert); groups
  // of 2, 1 and 2 tokens (one bmm, expert 1 padded); experts 0 and 2 with 1 unused between them,
  // and 3, 1, 1 tokens (padding would be 1.8x the routed rows): one product per expert instead.
  const std::vector<std::pair<const char*, std::vector<int64_t>>> routings = {
      {"all to expert 2", {2, 2, 2, 2, 2}},
      {"padded", {0, 1, 2, 0, 2}},
      {"experts 0 and 2", {0, 2, 2, 0, 0, 2, 2, 0, 0, 2}},
      {"skewed to expert 0", {0, 0, 0, 1, 2}},
  };
  const DeviceMesh mesh = world_line();
  for (int64_t inner : kIntermediate) {
    const Weights w = moe_weights(inner);
    const auto source = [&](const std::string& n) { return io::tensor_source(w.at("moe.experts." + n)); };
    nn::Experts whole(kExperts, kHidden, inner, DType::F64);
    nn::load_unsharded(whole, source);
    auto root = std::make_shared<nn::Module>("Root");
    auto sharded = root->add_module("experts", std::make_shared<nn::Experts>(kExperts, kHidden, inner, DType::F64));
    nn::apply_tp_plan(*root, nn::TpPlan{{{"experts", "moe_tp_experts"}}}, mesh,
                      [&](const std::string& n) { return source(n.substr(std::string("experts.").size())); });
    const Tensor x = ints({kTokens, kHidden}, 18);
    for (const auto& [what, routing] : routings) {
      const int64_t k = int64_t(routing.size()) / kTokens;
      const Tensor ids = Tensor::from_vector<int64_t>(routing, {kTokens, k});
      const Tensor weights = ints({kTokens, k}, 19, 1, 4);
      const Tensor expected = reference_experts(x, ids, weights, w.at("moe.experts.gate_up"), w.at("moe.experts.down"));
      INFO(what << ", inner " << inner << ", np " << mesh.size());
      CHECK(allclose(whole.route(x, ids, weights).tensor(), expected, 1e-12, 1e-12));
      CHECK(allclose(sharded->route(x, ids, weights).tensor(), expected, 1e-12, 1e-12));
    }
    // No tokens: an empty result, and the collective still runs on every rank.
    const Tensor none = Tensor::zeros({0, kHidden}, DType::F64);
    const Tensor no_ids = Tensor::zeros({0, kTopK}, DType::I64);
    CHECK(whole.route(none, no_ids, Tensor::zeros({0, kTopK}, DType::F64)).shape() == Shape{0, kHidden});
    CHECK(sharded->route(none, no_ids, Tensor::zeros({0, kTopK}, DType::F64)).shape() == Shape{0, kHidden});
  }
}

TEST_CASE("moe_tp_experts equals the unsharded MoE block with one all_reduce", "[nn][moe]") {
  const DeviceMesh mesh = world_line();
  for (int64_t inner : kIntermediate) {
    const Weights w = moe_weights(inner);
    MoEModel reference(inner);
    nn::load_unsharded(*reference.root, lookup(w));
    const Tensor x = ints({kTokens, kHidden}, 16);
    const Tensor expected = (*reference.moe)(x).tensor();

    for (const char* router : {"", "replicate"}) {
      MoEModel model(inner);
      nn::TpPlan plan{{{"moe.experts", "moe_tp_experts"}}};
      if (*router) plan.rules.push_back({"moe.gate", router});
      nn::apply_tp_plan(*model.root, plan, mesh, lookup(w));
      // gate_up: this rank's I rows of each of gate and up; down: its I columns.
      const ChunkSpan span = chunk_span(inner, mesh.size(), mesh.coordinate()[0]);
      nn::Module& experts = *model.root->find("moe.experts");
      CHECK(equal(experts.parameter("gate_up").tensor(),
                  packed_rows(w.at("moe.experts.gate_up"), 1, span.offset, span.size)));
      CHECK(equal(experts.parameter("down").tensor(), w.at("moe.experts.down").narrow(2, span.offset, span.size)));

      CommRecorder recorder;
      const Tensor y = (*model.moe)(x).tensor();
      INFO("inner " << inner << " router '" << router << "' np " << mesh.size());
      CHECK(allclose(y, expected, 1e-12, 1e-12));
      if (mesh.size() > 1) {
        REQUIRE(recorder.calls().size() == 1);
        CHECK(recorder.calls()[0].kind == CollectiveKind::AllReduce);
      }
      // [B, S, H] input: the same tokens.
      CHECK(allclose((*model.moe)(x.view({1, kTokens, kHidden})).tensor(), expected.view({1, kTokens, kHidden}), 1e-12,
                     1e-12));
    }

    // `local` experts: every rank holds them whole; no communication.
    MoEModel local(inner);
    nn::apply_tp_plan(*local.root, nn::TpPlan{{{"moe.experts", "local"}}}, mesh, lookup(w));
    CommRecorder recorder;
    CHECK(equal((*local.moe)(x).tensor(), expected));
    CHECK(recorder.calls().empty());
  }
}

TEST_CASE("SparseMoE routes to the top-k experts with renormalised weights", "[nn][moe]") {
  const int64_t inner = 7;
  const Weights w = moe_weights(inner);
  MoEModel model(inner);
  nn::load_unsharded(*model.root, lookup(w));
  const Tensor x = ints({kTokens, kHidden}, 17);
  const Tensor probs = softmax(linear(x, w.at("moe.gate.weight")), -1);
  auto [top, ids] = topk(probs, kTopK, -1);
  const Tensor weights = div(top, sum(top, {-1}, true));
  CHECK(allclose(sum(weights, {-1}), Tensor::full({kTokens}, 1.0, DType::F64), 1e-15, 1e-15));
  const Tensor expected = reference_experts(x, ids, weights, w.at("moe.experts.gate_up"), w.at("moe.experts.down"));
  CHECK(allclose((*model.moe)(x).tensor(), expected, 1e-12, 1e-12));
}

TEST_CASE("bad routing ids, bad packed shapes and misapplied strategies are typed errors", "[nn][moe][errors]") {
  const DeviceMesh mesh = world_line();
  const int64_t inner = 7;
  const Weights w = moe_weights(inner);
  MoEModel model(inner);
  nn::apply_tp_plan(*model.root, nn::TpPlan{{{"moe.experts", "moe_tp_experts"}}}, mesh, lookup(w));
  auto& experts = dynamic_cast<nn::Experts&>(*model.root->find("moe.experts"));
  const Tensor x = ints({kTokens, kHidden}, 18);
  const Tensor weights = ints({kTokens, kTopK}, 19, 1, 3);
  for (int64_t bad : {kExperts, int64_t(-1)}) {
    Tensor ids = Tensor::zeros({kTokens, kTopK}, DType::I64);
    ids.select(0, 3).select(0, 1).fill(double(bad));
    CHECK_THROWS_AS(experts.route(x, ids, weights), ValueError);
    CHECK_THROWS_WITH(experts.route(x, ids, weights),
                      Catch::Contains("expert_ids[3, 1]") && Catch::Contains("out of range"));
  }
  const Tensor ids = Tensor::zeros({kTokens, kTopK}, DType::I64);
  CHECK_THROWS_AS(experts.route(x, ids, ints({kTokens, 1}, 1)), ShapeError);
  CHECK_THROWS_AS(experts.route(ints({kTokens, kHidden + 1}, 1), ids, weights), ShapeError);
  CHECK_THROWS_AS(experts.route(x, ids.to(DType::F64), weights), DTypeError);
  CHECK_THROWS_WITH(experts(x), Catch::Contains("route"));

  // A checkpoint whose gate_up is not [E, 2I, H]: refused naming the parameter, before any read.
  Weights unpacked = w;
  unpacked["moe.experts.gate_up"] = ints({kExperts, inner, kHidden}, 12);
  MoEModel wrong(inner);
  CHECK_THROWS_AS(
      nn::apply_tp_plan(*wrong.root, nn::TpPlan{{{"moe.experts", "moe_tp_experts"}}}, mesh, lookup(unpacked)),
      ShapeError);
  CHECK_THROWS_WITH(
      nn::apply_tp_plan(*wrong.root, nn::TpPlan{{{"moe.experts", "moe_tp_experts"}}}, mesh, lookup(unpacked)),
      Catch::Contains("moe.experts.gate_up"));

  // A Linear whose packed dim is odd cannot hold [gate; up].
  auto root = std::make_shared<nn::Module>("Root");
  root->add_module("fc", std::make_shared<nn::Linear>(kHidden, 7, true, DType::F64));
  const Weights odd = {{"fc.weight", ints({7, kHidden}, 1)}, {"fc.bias", ints({7}, 2)}};
  CHECK_THROWS_AS(nn::apply_tp_plan(*root, nn::TpPlan{{{"fc", "packed_colwise"}}}, mesh, lookup(odd)), ShapeError);
  CHECK_THROWS_WITH(nn::apply_tp_plan(*root, nn::TpPlan{{{"fc", "packed_colwise"}}}, mesh, lookup(odd)),
                    Catch::Contains("'weight'") && Catch::Contains("packed parts"));

  // The packed Linear strategies refuse experts, moe_tp_experts refuses a Linear.
  MoEModel misapplied(inner);
  CHECK_THROWS_WITH(
      nn::apply_tp_plan(*misapplied.root, nn::TpPlan{{{"moe.experts", "packed_colwise"}}}, mesh, lookup(w)),
      Catch::Contains("Linear") && Catch::Contains("Experts"));
  MoEModel misapplied2(inner);
  CHECK_THROWS_WITH(nn::apply_tp_plan(*misapplied2.root, nn::TpPlan{{{"moe.gate", "moe_tp_experts"}}}, mesh, lookup(w)),
                    Catch::Contains("moe_tp_experts") && Catch::Contains("Experts"));
}
