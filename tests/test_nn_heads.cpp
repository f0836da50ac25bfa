// Head-aware sharding of attention projections (nn/head_sharding.hpp): a small grouped-query
// attention block whose forward runs on the heads of its rank, under colwise q/k/v and rowwise o,
// against the unsharded block on the 1-D world mesh (np 1..4): heads that divide the TP size,
// heads that do not (head-granular split), KV heads replicated, and refused plans.
#include <catch2/catch.hpp>

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "nn/head_sharding.hpp"
#include "nn/layers.hpp"
#include "nn/tp_plan.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <cmath>
#include <limits>
#include <map>

using namespace dtensor;
using nn::AttentionHeads;
using nn::HeadRange;
using nn::HeadRole;
using nn::Value;

namespace {

Tensor ints(const Shape& shape, uint64_t seed, int64_t low = -2, int64_t high = 3) {
  return random(shape, DType::I64, {.seed = seed, .a = double(low), .b = double(high)}).to(DType::F64);
}

// u8 [seq, seq], 1 above the diagonal: position i may not attend to j > i.
Tensor causal_mask(int64_t seq) {
  std::vector<uint8_t> mask(size_t(seq * seq), 0);
  for (int64_t i = 0; i < seq; ++i)
    for (int64_t j = i + 1; j < seq; ++j) mask[size_t(i * seq + j)] = 1;
  return Tensor::from_vector(mask, {seq, seq});
}

// q/k/v/o projections and grouped-query attention over x [seq, hidden], with plain tensor ops on
// the heads this rank holds: query head h reads KV head h / group.
class Attention : public nn::Module {
 public:
  Attention(int64_t hidden, AttentionHeads heads, bool causal) : Module("Attention"), heads_(heads), causal_(causal) {
    const int64_t d = heads.head_dim;
    q_ = add_module("q_proj", std::make_shared<nn::Linear>(hidden, heads.num_heads * d, true, DType::F64));
    k_ = add_module("k_proj", std::make_shared<nn::Linear>(hidden, heads.num_kv_heads * d, true, DType::F64));
    v_ = add_module("v_proj", std::make_shared<nn::Linear>(hidden, heads.num_kv_heads * d, true, DType::F64));
    o_ = add_module("o_proj", std::make_shared<nn::Linear>(heads.num_heads * d, hidden, true, DType::F64));
    q_->set_heads(HeadRole::Query, heads);
    k_->set_heads(HeadRole::KeyValue, heads);
    v_->set_heads(HeadRole::KeyValue, heads);
    o_->set_heads(HeadRole::Output, heads);
  }

  // The heads this rank computes: all of them unsharded, else its share of the TP mesh.
  nn::RankHeads local_heads() const {
    if (q_->strategy() == nullptr) return {{0, heads_.num_heads}, {0, heads_.num_kv_heads}};
    const DeviceMesh& mesh = q_->strategy_mesh();
    return nn::rank_heads(heads_, mesh.size(), mesh.coordinate()[0]);
  }

 protected:
  Value forward(const Value& x) override {
    const int64_t d = heads_.head_dim;
    const nn::RankHeads mine = local_heads();
    // colwise leaves plain tensors of this rank's heads: [seq, heads * d].
    const Tensor q = (*q_)(x).tensor(), k = (*k_)(x).tensor(), v = (*v_)(x).tensor();
    REQUIRE(q.shape()[1] == mine.query.count() * d);
    REQUIRE(k.shape()[1] == mine.kv.count() * d);
    const int64_t seq = q.shape()[0];
    std::vector<Tensor> outputs;
    for (int64_t h = mine.query.begin; h < mine.query.end; ++h) {
      const int64_t kv = h / heads_.group_size() - mine.kv.begin;  // this rank's copy of h's KV head
      Tensor qh = q.narrow(1, (h - mine.query.begin) * d, d);
      Tensor kh = k.narrow(1, kv * d, d), vh = v.narrow(1, kv * d, d);
      Tensor scores = mul(matmul(qh, kh.transpose(0, 1)), 1.0 / std::sqrt(double(d)));
      if (causal_) scores = masked_fill(scores, causal_mask(seq), -std::numeric_limits<double>::infinity());
      outputs.push_back(matmul(softmax(scores, -1), vh));
    }
    return (*o_)(cat(outputs, 1));  // rowwise: the block's one all-reduce
  }

 private:
  AttentionHeads heads_;
  bool causal_;
  std::shared_ptr<nn::Linear> q_, k_, v_, o_;
};

constexpr int64_t kHidden = 8;

struct Model {
  std::shared_ptr<nn::Module> root = std::make_shared<nn::Module>("Root");
  std::shared_ptr<Attention> attn;
  std::map<std::string, Tensor> weights;

  Model(AttentionHeads heads, bool causal) {
    attn = root->add_module("attn", std::make_shared<Attention>(kHidden, heads, causal));
    uint64_t seed = 1;
    for (auto& [path, module] : root->named_modules())
      for (const std::string& param : module->parameter_names())
        weights[path + "." + param] = ints(module->parameter_shape(param), seed++);
  }
  nn::SourceLookup sources() const {
    return [this](const std::string& name) { return io::tensor_source(weights.at(name)); };
  }
};

DeviceMesh world_line() { return DeviceMesh::from_world({dtensor::world().size()}); }

const nn::TpPlan kAttentionPlan{
    {{"attn.q_proj", "colwise"}, {"attn.k_proj", "colwise"}, {"attn.v_proj", "colwise"}, {"attn.o_proj", "rowwise"}}};

// Runs the block under `plan` and unsharded on the same input; checks the outputs agree and that
// the sharded forward cost exactly one all-reduce. Returns the sharded model for more checks.
std::unique_ptr<Model> check_against_unsharded(AttentionHeads heads, const nn::TpPlan& plan) {
  std::unique_ptr<Model> sharded;
  for (bool causal : {false, true}) {
    Model reference(heads, causal);
    nn::load_unsharded(*reference.root, reference.sources());
    sharded = std::make_unique<Model>(heads, causal);
    nn::apply_tp_plan(*sharded->root, plan, world_line(), sharded->sources());
    for (int64_t seq : {5, 1}) {
      Tensor x = ints({seq, kHidden}, 77 + uint64_t(seq));
      Tensor expected = (*reference.attn)(x).tensor();
      CommRecorder recorder;
      Tensor y = (*sharded->attn)(x).tensor();
      INFO("heads " << heads.num_heads << " kv " << heads.num_kv_heads << " causal " << causal << " seq " << seq);
      CHECK(allclose(y, expected, 1e-12, 1e-12));
      if (dtensor::world().size() > 1) {
        REQUIRE(recorder.calls().size() == 1);
        CHECK(recorder.calls()[0].kind == CollectiveKind::AllReduce);
      }
    }
  }
  return sharded;
}

// This rank's rows (dim 0) or columns (dim 1) [begin, end) x head_dim of a full weight.
Tensor head_slice(const Tensor& full, int64_t dim, HeadRange heads, int64_t head_dim) {
  return full.narrow(dim, heads.begin * head_dim, heads.count() * head_dim);
}

int64_t tp_rank() { return world_line().coordinate()[0]; }

}  // namespace

TEST_CASE("rank_heads: balanced query split, KV heads follow the query heads", "[nn][heads]") {
  auto split = [](AttentionHeads h, int64_t tp) {
    std::vector<std::pair<HeadRange, HeadRange>> out;
    for (int64_t r = 0; r < tp; ++r) out.emplace_back(nn::rank_heads(h, tp, r).query, nn::rank_heads(h, tp, r).kv);
    return out;
  };
  using P = std::pair<HeadRange, HeadRange>;
  // 6 heads on 4 ranks: 2, 2, 1, 1; KV groups of 2, so kv 0, 1, 2, 2.
  CHECK(split({6, 3, 4}, 4) == std::vector<P>{{{0, 2}, {0, 1}}, {{2, 4}, {1, 2}}, {{4, 5}, {2, 3}}, {{5, 6}, {2, 3}}});
  // KV replication: 8 heads, 2 KV heads on 4 ranks: rank r holds KV head r / 2.
  CHECK(split({8, 2, 4}, 4) == std::vector<P>{{{0, 2}, {0, 1}}, {{2, 4}, {0, 1}}, {{4, 6}, {1, 2}}, {{6, 8}, {1, 2}}});
  // 8 heads / 4 KV on 3 ranks: 3, 3, 2; KV head 1 straddles ranks 0 and 1.
  CHECK(split({8, 4, 4}, 3) == std::vector<P>{{{0, 3}, {0, 2}}, {{3, 6}, {1, 3}}, {{6, 8}, {3, 4}}});
  CHECK(nn::heads_split_like_chunk({8, 4, 2}, HeadRole::Query, 4));
  CHECK(nn::heads_split_like_chunk({8, 4, 2}, HeadRole::KeyValue, 4));
  CHECK_FALSE(nn::heads_split_like_chunk({8, 2, 2}, HeadRole::KeyValue, 4));
  CHECK_FALSE(nn::heads_split_like_chunk({6, 3, 2}, HeadRole::Query, 4));
  CHECK_THROWS_AS(nn::rank_heads({3, 3, 4}, 4, 0), ValueError);
  CHECK_THROWS_AS(nn::check_heads({6, 4, 2}, "cfg"), ValueError);
}

TEST_CASE("attention with heads that divide the TP size keeps Shard placements", "[nn][heads]") {
  const AttentionHeads heads{8, 4, 2};
  auto model = check_against_unsharded(heads, kAttentionPlan);
  const int64_t tp = world_line().size();
  const Value& q = model->root->find("attn.q_proj")->parameter("weight");
  const Value& k = model->root->find("attn.k_proj")->parameter("weight");
  const Value& o = model->root->find("attn.o_proj")->parameter("weight");
  if (tp != 3) {  // 8 query and 4 KV heads split evenly: torch.chunk, DTensor Shard
    CHECK(q.dtensor().placements() == Placements{Shard(0)});
    CHECK(k.dtensor().placements() == Placements{Shard(0)});
    CHECK(o.dtensor().placements() == Placements{Shard(1)});
  } else {  // 3, 3, 2 query heads: plain local tensors of whole heads
    const nn::RankHeads mine = nn::rank_heads(heads, tp, tp_rank());
    CHECK(equal(q.tensor(), head_slice(model->weights["attn.q_proj.weight"], 0, mine.query, 2)));
    CHECK(equal(k.tensor(), head_slice(model->weights["attn.k_proj.weight"], 0, mine.kv, 2)));
    CHECK(equal(o.tensor(), head_slice(model->weights["attn.o_proj.weight"], 1, mine.query, 2)));
  }
}

TEST_CASE("attention with heads that do not divide the TP size splits whole heads", "[nn][heads]") {
  // At np 4: query heads 2, 2, 1, 1; each rank holds the KV head its query heads read (0, 1, 2, 2).
  const AttentionHeads heads{6, 3, 2};
  auto model = check_against_unsharded(heads, kAttentionPlan);
  const int64_t tp = world_line().size();
  const nn::RankHeads mine = nn::rank_heads(heads, tp, tp_rank());
  if (tp == 4) {
    const std::vector<int64_t> query_heads = {2, 2, 1, 1}, kv_head = {0, 1, 2, 2};
    CHECK(mine.query.count() == query_heads[size_t(tp_rank())]);
    CHECK(mine.kv == HeadRange{kv_head[size_t(tp_rank())], kv_head[size_t(tp_rank())] + 1});
  }
  if (tp == 2 || tp == 4) {
    const Value& q = model->root->find("attn.q_proj")->parameter("weight");
    const Value& v = model->root->find("attn.v_proj")->parameter("weight");
    const Value& o_bias = model->root->find("attn.o_proj")->parameter("bias");
    CHECK_FALSE(v.is_distributed());
    CHECK(equal(v.tensor(), head_slice(model->weights["attn.v_proj.weight"], 0, mine.kv, 2)));
    if (tp == 2) {  // 3 query heads each: o_proj stays Shard(1), its bias Replicate
      CHECK(q.dtensor().placements() == Placements{Shard(0)});
      CHECK(o_bias.dtensor().placements() == Placements{Replicate()});
    } else {  // plain local heads; the bias is added once to the partial sums: whole on rank 0
      CHECK(equal(q.tensor(), head_slice(model->weights["attn.q_proj.weight"], 0, mine.query, 2)));
      CHECK(equal(o_bias.tensor(),
                  tp_rank() == 0 ? model->weights["attn.o_proj.bias"] : Tensor::zeros({kHidden}, DType::F64)));
    }
  }
}

TEST_CASE("KV heads fewer than the TP size are replicated", "[nn][heads]") {
  // 8 query heads, 2 KV heads: at np 4 rank r holds KV head r / 2, query heads 2r and 2r + 1.
  const AttentionHeads heads{8, 2, 2};
  auto model = check_against_unsharded(heads, kAttentionPlan);
  const int64_t tp = world_line().size();
  if (tp == 4) {
    const Value& k = model->root->find("attn.k_proj")->parameter("weight");
    const int64_t kv = tp_rank() / 2;
    CHECK(equal(k.tensor(), head_slice(model->weights["attn.k_proj.weight"], 0, {kv, kv + 1}, 2)));
    CHECK(model->root->find("attn.q_proj")->parameter("weight").dtensor().placements() == Placements{Shard(0)});
  }
}

TEST_CASE("local_colwise / local_rowwise under gather split heads the same way", "[nn][heads]") {
  nn::TpPlan plan{{{"attn", "gather"},
                   {"attn.q_proj", "local_colwise"},
                   {"attn.k_proj", "local_colwise"},
                   {"attn.v_proj", "local_colwise"},
                   {"attn.o_proj", "local_rowwise"}}};
  for (AttentionHeads heads : {AttentionHeads{6, 3, 2}, AttentionHeads{8, 2, 2}}) check_against_unsharded(heads, plan);
}

TEST_CASE("attention plans that cannot split whole heads are refused", "[nn][heads]") {
  const int64_t tp = world_line().size();
  // More ranks than query heads: at np 4 for 3 heads, at np > 1 for 1 head.
  for (AttentionHeads heads : {AttentionHeads{3, 3, 2}, AttentionHeads{1, 1, 4}}) {
    INFO("heads " << heads.num_heads);
    if (tp <= heads.num_heads) {
      check_against_unsharded(heads, kAttentionPlan);
      continue;
    }
    Model refused(heads, false);
    CHECK_THROWS_AS(nn::apply_tp_plan(*refused.root, kAttentionPlan, world_line(), refused.sources()), ValueError);
    CHECK_THROWS_WITH(nn::apply_tp_plan(*refused.root, kAttentionPlan, world_line(), refused.sources()),
                      Catch::Contains("'attn.q_proj'") && Catch::Contains(fmt::format("TP size {}", tp)) &&
                          Catch::Contains(fmt::format("{} query heads", heads.num_heads)));
    CHECK_THROWS_WITH(
        nn::apply_tp_plan(*refused.root, nn::TpPlan{{{"attn.o_proj", "rowwise"}}}, world_line(), refused.sources()),
        Catch::Contains("'attn.o_proj'"));
    // Refused before anything was loaded.
    for (auto& [name, value] : refused.root->named_parameters()) CHECK_FALSE(value->defined());
    // colwise_rep / rowwise_rep gather or reduce the whole output: heads do not constrain them.
    nn::TpPlan rep{{{"attn.q_proj", "colwise_rep"}, {"attn.o_proj", "rowwise_rep"}}};
    Model replicated(heads, false);
    CHECK_NOTHROW(nn::apply_tp_plan(*replicated.root, rep, world_line(), replicated.sources()));
  }
  // Head configurations wrong in themselves are refused where they are declared.
  nn::Linear q(8, 12, true, DType::F64);
  CHECK_THROWS_AS(q.set_heads(HeadRole::Query, {6, 4, 2}), ValueError);   // 6 heads, 4 KV heads
  CHECK_THROWS_AS(q.set_heads(HeadRole::Query, {4, 4, 2}), ShapeError);   // 4 x 2 != 12 rows
  CHECK_THROWS_AS(q.set_heads(HeadRole::Output, {6, 3, 2}), ShapeError);  // 6 x 2 != 8 columns
  CHECK_NOTHROW(q.set_heads(HeadRole::Query, {6, 3, 2}));
}

TEST_CASE("head-granular projections accept replicated DTensor inputs", "[nn][heads]") {
  // 6 query heads: uneven at np 4, so the parameters are plain and the hooks slice or unwrap.
  const AttentionHeads heads{6, 3, 2};
  auto root = std::make_shared<nn::Module>("Root");
  auto q = root->add_module("q", std::make_shared<nn::Linear>(kHidden, 12, true, DType::F64));
  auto o = root->add_module("o", std::make_shared<nn::Linear>(12, kHidden, true, DType::F64));
  q->set_heads(HeadRole::Query, heads);
  o->set_heads(HeadRole::Output, heads);
  std::map<std::string, Tensor> w = {{"q.weight", ints({12, kHidden}, 21)},
                                     {"q.bias", ints({12}, 22)},
                                     {"o.weight", ints({kHidden, 12}, 23)},
                                     {"o.bias", ints({kHidden}, 24)}};
  const DeviceMesh mesh = world_line();
  nn::apply_tp_plan(*root, nn::TpPlan{{{"q", "colwise"}, {"o", "rowwise"}}}, mesh,
                    [&](const std::string& n) { return io::tensor_source(w.at(n)); });
  const nn::RankHeads mine = nn::rank_heads(heads, mesh.size(), tp_rank());
  Tensor x = ints({3, kHidden}, 25), h = ints({3, 12}, 26);
  Tensor q_out = (*q)(DTensor::from_local(x, mesh, {Replicate()})).tensor();
  CHECK(equal(q_out, head_slice(linear(x, w["q.weight"], w["q.bias"]), 1, mine.query, 2)));
  CHECK(equal((*o)(DTensor::from_local(h, mesh, {Replicate()})).tensor(), linear(h, w["o.weight"], w["o.bias"])));
}
