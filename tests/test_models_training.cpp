// CausalLM::training_logits (models/causal_lm.hpp): a batch of sequences, each from position 0,
// without a KV cache, under no plan, the auto plan, the sequence-parallel plan and the auto plan
// with a colwise (vocab-parallel) lm_head, at np 1..4. Cases: a tied Llama with an uneven vocab
// (37) and 6 query heads over 2 KV heads (an uneven head split at np 4, KV heads replicated), and
// a Mixtral whose intermediate size the TP size does not divide.
#include "test_models_util.hpp"

#include "dtensor/autograd.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "tensor/ops.hpp"

using namespace dtensor;
using models_test::mixtral;
using models_test::SharedDir;
using models_test::tied_llama;
using models_test::TinySpec;
using models_test::training_plans;
using models_test::world_line;

namespace {

Tensor whole_logits(const nn::Value& logits) {
  return logits.is_distributed() ? logits.dtensor().full_tensor() : logits.tensor();
}

const std::vector<std::vector<int64_t>> kBatch = {{3, 17, 0, 36, 5, 22}, {9, 11, 30, 1, 1, 28}};

Tensor batch_ids() {
  std::vector<int64_t> flat;
  for (const auto& row : kBatch) flat.insert(flat.end(), row.begin(), row.end());
  return Tensor::from_vector(flat, {int64_t(kBatch.size()), int64_t(kBatch[0].size())});
}

void check_training_logits(const TinySpec& spec) {
  SharedDir dir;
  models_test::write_checkpoint(dir, spec);
  const models::HFConfig config = models::load_hf_config(dir.str());
  auto reference = models::load_unsharded(dir.str(), DType::F32);
  std::vector<Tensor> rows;
  for (const auto& row : kBatch) {
    reference->reset_cache();
    rows.push_back(reference->forward_tokens(row));
  }
  const Tensor expected = cat(rows, 0);
  reference->reset_cache();
  const Tensor unsharded = whole_logits(reference->training_logits(batch_ids()));
  CHECK(max_abs_diff(unsharded, expected) <= 1e-4);
  CHECK(reference->cache_length() == 0);

  for (const auto& [plan_name, plan] : training_plans(config)) {
    INFO(spec.architecture << ", plan " << plan_name << ", np " << world().size());
    auto sharded = models::load_sharded(dir.str(), world_line(), plan, DType::F32);
    const nn::Value logits = sharded->training_logits(batch_ids());
    CHECK(logits.shape() == Shape{int64_t(kBatch.size() * kBatch[0].size()), spec.vocab});
    if (plan_name == "vocab-parallel lm_head" && world().size() > 1) {
      REQUIRE(logits.is_distributed());
      CHECK(logits.dtensor().placements() == Placements{Shard(1)});
    }
    CHECK(max_abs_diff(whole_logits(logits), expected) <= 1e-4);
    // No parameter requires a gradient: nothing was recorded.
    const bool recorded =
        logits.is_distributed() ? autograd::requires_grad(logits.dtensor()) : autograd::requires_grad(logits.tensor());
    CHECK_FALSE(recorded);
  }
}

}  // namespace

TEST_CASE("training_logits: each row a sequence from position 0, as forward_tokens runs it", "[models][training]") {
  SECTION("tied Llama, 6 heads / 2 KV heads, vocab 37") { check_training_logits(tied_llama()); }
  SECTION("Mixtral, intermediate 22") { check_training_logits(mixtral()); }
}

TEST_CASE("training_logits refuses ids it cannot run, naming the position", "[models][training][errors]") {
  SharedDir dir;
  models_test::write_checkpoint(dir, TinySpec{});
  auto model = models::load_unsharded(dir.str(), DType::F32);
  const Tensor bad = Tensor::from_vector<int64_t>({1, 2, 3, 4, 37, 5}, {2, 3});
  CHECK_THROWS_AS(model->training_logits(bad), ValueError);
  CHECK_THROWS_WITH(model->training_logits(bad), Catch::Contains("id 37 at [1, 1]"));
  CHECK_THROWS_AS(model->training_logits(Tensor::from_vector<int64_t>({1, 2}, {2})), ShapeError);
  CHECK_THROWS_AS(model->training_logits(Tensor::zeros({2, 2}, DType::F32)), DTypeError);
}
