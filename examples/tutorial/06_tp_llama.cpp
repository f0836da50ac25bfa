// Step 6 of docs/tutorial.md: a Llama loaded tensor-parallel from a tp_plan, generating greedily,
// compared with the same model unsharded. Runs on any number of ranks.
//
//   scripts/mpirun.sh -np 4 build/examples/tutorial/06_tp_llama [CHECKPOINT_DIR]
//
// Rank 0 first writes a tiny random Llama checkpoint (config.json + model.safetensors, Hugging Face
// layout) to CHECKPOINT_DIR (default: tutorial-llama in the current directory).
#include "tutorial.hpp"

#include "collectives/runtime.hpp"
#include "models/causal_lm.hpp"
#include "models/hf_config.hpp"
#include "nn/tp_plan.hpp"
#include "tensor/ops.hpp"
#include "tools/random_checkpoint.hpp"

using namespace dtensor;

namespace {

// Which strategy each module runs, by name pattern (`*` is one name component), as the tp_plan of
// a Hugging Face model: attention and MLP colwise then rowwise (one all_reduce per block), the
// embedding split by vocab (rowwise), lm_head colwise with the logits gathered (colwise_rep).
constexpr const char* kPlan = R"({
  "model.embed_tokens": "rowwise",
  "model.layers.*.self_attn.q_proj": "colwise", "model.layers.*.self_attn.k_proj": "colwise",
  "model.layers.*.self_attn.v_proj": "colwise", "model.layers.*.self_attn.o_proj": "rowwise",
  "model.layers.*.mlp.gate_proj": "colwise", "model.layers.*.mlp.up_proj": "colwise",
  "model.layers.*.mlp.down_proj": "rowwise",
  "lm_head": "colwise_rep"
})";

// The report's lines without those of model.layers.1: a module's line, then its parameters' lines
// (indented).
std::string without_layer_1(const std::string& report) {
  std::string out, line;
  bool skipping = false;
  for (size_t at = 0, end; (end = report.find('\n', at)) != std::string::npos; at = end + 1) {
    line = report.substr(at, end - at);
    if (!line.starts_with(" ")) skipping = line.starts_with("model.layers.1.");
    if (!skipping) out += line + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    const bool root = world.rank() == 0;
    const std::string dir = argc > 1 ? argv[1] : "tutorial-llama";
    if (root) {
      // 6 query heads and 2 KV heads: at 4 ranks the heads split 2, 2, 1, 1 and KV heads are shared.
      tools::RandomCheckpointSpec spec{
          .hidden = 48, .intermediate = 88, .layers = 2, .heads = 6, .kv_heads = 2, .vocab = 250, .seed = 7};
      tools::write_random_checkpoint(dir, spec);
    }
    world.barrier();  // the checkpoint is complete before anyone reads it

    DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
    nn::PlanReport report;
    auto model = models::load_sharded(dir, mesh, nn::TpPlan::from_json(kPlan), DType::F32, &report);
    // The report: each module's strategy, then each parameter's placements and this rank's shape.
    if (root) {
      fmt::print("plan report (rank 0), model.layers.1 left out (split as layer 0):\n{}",
                 without_layer_1(report.explain));
      fmt::print("loaded whole on every rank (no rule): {}\n", fmt::join(report.uncovered_parameters, ", "));
    }
    // Attention is split in whole heads (head_dim 8): uneven when the ranks do not divide them.
    nn::Module& attention = *model->find("model.layers.0.self_attn");
    const int64_t q_rows = attention.find("q_proj")->parameter("weight").local().size(0);
    const int64_t kv_rows = attention.find("k_proj")->parameter("weight").local().size(0);
    tutorial::print_each_rank(world, fmt::format("{} query head(s), {} KV head(s)", q_rows / 8, kv_rows / 8));

    const std::vector<int64_t> prompt = {3, 14, 15, 92, 65};
    models::Generation sharded = models::generate_greedy(*model, prompt, 8);
    if (root) fmt::print("generated ids (tp over {} ranks): {}\n", world.size(), fmt::join(sharded.new_ids, " "));

    // The reference: the whole model in one process (rank 0), the same prompt.
    bool same = true;
    if (root) {
      auto whole = models::load_unsharded(dir, DType::F32);
      models::Generation single = models::generate_greedy(*whole, prompt, 8);
      const double diff = max_abs_diff(sharded.prompt_logits, single.prompt_logits);
      same = single.new_ids == sharded.new_ids && diff < 1e-4;
      fmt::print("generated ids (one process):    {}\n", fmt::join(single.new_ids, " "));
      fmt::print("same ids and logits within 1e-4: {}\n", same ? "yes" : "NO");
    }
    Tensor verdict = Tensor::full({1}, same ? 0.0 : 1.0, DType::F32);
    world.broadcast(verdict, 0);  // every rank exits with rank 0's verdict
    return verdict.item<float>() == 0 ? 0 : 1;
  });
}
