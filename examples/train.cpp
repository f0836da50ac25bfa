// Trains a Llama / Mixtral checkpoint sharded over every rank (tensor parallel) on a token file.
//
//   scripts/mpirun.sh -np 4 build/examples/train --model DIR --tokens tokens.npy --steps 10 --batch 4
//       --lr 1e-3 [--weight-decay 0.01] [--clip-grad-norm 1.0] [--plan auto|plan.json] [--dtype f32|bf16]
//       [--checkpoint-activations] [--log steps.jsonl] [--save OUT_DIR] [--check]   (one line)
//
// tokens.npy holds integer ids [N, T+1] (int32 or int64, as numpy.save writes them). Step s trains
// on rows (s*B .. s*B+B-1) mod N: inputs row[:-1], labels row[1:], the mean token cross-entropy,
// AdamW (betas 0.9 / 0.95, eps 1e-8, weight decay on every parameter) after clip_grad_norm_ when
// --clip-grad-norm is given: torch's semantics, so tools/compare_torch_training.py reproduces the
// run with transformers (examples/training.hpp). Rank 0 prints, and appends to --log, one line per
// step: {"step": s, "loss": x, "grad_norm": g}. --dtype bf16 computes in bf16 and trains f32 master
// weights with f32 AdamW states. --save writes the trained f32 weights as a Hugging Face checkpoint
// (config.json copied) that generate and transformers load. --check reruns the steps with the
// unsharded model on rank 0 and prints
//   check: loss_max_rel_diff=X (...) grad_norm_max_rel_diff=X weight_max_abs_diff=X (NAME) ok|MISMATCH
// exiting 1 on every rank when a loss or a gradient norm differs by more than 1e-5 relative or a weight by more than
// 1e-5 (f32; bf16: 2e-2 and 2e-2, its rounding of differently ordered sums). Bad flags
// (examples/program_flags.hpp: rank 0 prints the error, every rank exits 2) and inputs (a missing
// or float --tokens file, one not 2-D, a batch larger than its rows, an id outside the vocabulary)
// are typed errors naming the value: the lowest rank that found one prints it and every rank exits 1.
#include "program_flags.hpp"
#include "training.hpp"

#include "autograd/autograd.hpp"
#include "collectives/runtime.hpp"
#include "io/checkpoint_writer.hpp"
#include "io/npy.hpp"
#include "mesh/device_mesh.hpp"
#include "models/gguf_model.hpp"
#include "models/hf_config.hpp"
#include "nn/tp_plan.hpp"
#include "tensor/ops.hpp"
#include "tools/parse_on_every_rank.hpp"
#include "tools/report_on_every_rank.hpp"
#include "tools/share_verdict.hpp"

#include <fmt/format.h>
#include <fmt/os.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

using namespace dtensor;

namespace {

constexpr const char* kOp = "train";

using programs::TrainFlags;

training::TrainOptions train_options(const TrainFlags& o) {
  return {.lr = o.lr,
          .weight_decay = o.weight_decay,
          .clip_grad_norm = o.clip_grad_norm,
          .dtype = dtype_from_name(o.dtype_flag),
          .checkpoint_activations = o.checkpoint_activations};
}

// What every rank reads and checks before training.
struct Prepared {
  models::HFConfig config;
  Tensor tokens;  // [N, T+1] i64
  std::shared_ptr<models::CausalLM> model;
  std::shared_ptr<models::CausalLM> f32_weights;  // bf16: the master weights' source
};

Prepared prepare(const TrainFlags& o, const DeviceMesh& mesh) {
  Prepared p;
  p.config = models::load_hf_config(o.model_dir);
  p.tokens = io::read_token_ids(o.tokens_file);
  check(o.batch <= p.tokens.size(0), kOp, "--batch {} is larger than the {} rows of --tokens {}", o.batch,
        p.tokens.size(0), o.tokens_file);
  training::check_token_ids(p.tokens, p.config.vocab_size, o.tokens_file);
  const nn::TpPlan plan =
      o.plan_file == "auto" ? models::auto_tp_plan(p.config) : nn::TpPlan::from_json_file(o.plan_file);
  const DType dtype = dtype_from_name(o.dtype_flag);
  nn::PlanReport report;
  p.model = models::load_sharded(o.model_dir, mesh, plan, dtype, &report);
  if (o.plan_file != "auto") programs::check_plan_matched(report, o.plan_file, kOp);
  if (dtype != DType::F32) p.f32_weights = models::load_sharded(o.model_dir, mesh, plan, DType::F32);
  return p;
}

std::string step_line(const training::StepResult& r) {
  return fmt::format("{{\"step\": {}, \"loss\": {}, \"grad_norm\": {}}}", r.step, r.loss, r.grad_norm);
}

std::vector<training::StepResult> train(training::Trainer& trainer, const TrainFlags& o, const Tensor& tokens,
                                        bool print) {
  std::ofstream log;
  if (print && !o.log_file.empty()) {
    log.open(o.log_file, std::ios::trunc);
    check(bool(log), kOp, "--log {}: cannot write the file", o.log_file);
  }
  std::vector<training::StepResult> results;
  for (int64_t s = 0; s < o.steps; ++s) {
    results.push_back(trainer.step(s, tokens, o.batch));
    if (!print) continue;
    fmt::print("{}\n", step_line(results.back()));
    std::fflush(stdout);
    if (log.is_open()) log << step_line(results.back()) << '\n' << std::flush;
  }
  return results;
}

// Every trained weight whole on rank 0 (gathered collectively), by parameter name; nothing on
// the other ranks.
std::map<std::string, Tensor> whole_weights(training::Trainer& trainer, const DeviceMesh& mesh, bool root) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, value] : trainer.weights()) {
    Tensor whole = training::whole_weight(trainer.model(), name, *value, mesh);
    if (root) out[name] = std::move(whole);
  }
  return out;
}

// The Hugging Face names of a weight: Mixtral's packed experts.gate_up [E, 2I, H] and
// experts.down [E, H, I] become experts.{e}.w1 / w3 (the rows of gate and up) and w2.
// A DTensor that needs no unpacking goes as it is (gathered to the writing rank only); the others
// are made whole on every rank first (training::whole_weight).
io::NamedDTensors hf_tensors(training::Trainer& trainer, const std::string& name, const nn::Value& value,
                             const DeviceMesh& mesh) {
  auto replicated = [&](const Tensor& t) {
    return DTensor::from_local(t.contiguous(), mesh, {Replicate()}, t.shape());
  };
  const bool gate_up = name.ends_with(".experts.gate_up"), down = name.ends_with(".experts.down");
  if (!gate_up && !down && value.is_distributed()) return {{name, value.dtensor()}};
  const Tensor whole = training::whole_weight(trainer.model(), name, value, mesh);
  if (!gate_up && !down) return {{name, replicated(whole)}};
  const std::string experts = name.substr(0, name.rfind('.'));
  io::NamedDTensors out;
  for (int64_t e = 0; e < whole.size(0); ++e) {
    const Tensor expert = whole.select(0, e);
    const std::string prefix = fmt::format("{}.{}.", experts, e);
    if (down) {
      out.emplace_back(prefix + "w2.weight", replicated(expert));
      continue;
    }
    const int64_t inter = expert.size(0) / 2;
    out.emplace_back(prefix + "w1.weight", replicated(expert.narrow(0, 0, inter)));
    out.emplace_back(prefix + "w3.weight", replicated(expert.narrow(0, inter, inter)));
  }
  return out;
}

// A tied lm_head has no weight of its own (the embedding's), so none is written, as
// save_pretrained does.
void save(const TrainFlags& o, training::Trainer& trainer, const DeviceMesh& mesh, bool root) {
  autograd::NoGradGuard no_grad;
  io::NamedDTensors tensors;
  for (const auto& [name, value] : trainer.weights()) {
    for (auto& named : hf_tensors(trainer, name, *value, mesh)) tensors.push_back(std::move(named));
  }
  io::save_dtensors(o.save_dir, tensors);
  if (root) {
    namespace fs = std::filesystem;
    if (models::is_gguf_path(o.model_dir)) {  // the saved checkpoint gets the config GGUF metadata gives
      std::ofstream(fs::path(o.save_dir) / "config.json") << models::gguf_config_json(io::GgufFile::open(o.model_dir));
    } else {
      fs::copy_file(fs::path(o.model_dir) / "config.json", fs::path(o.save_dir) / "config.json",
                    fs::copy_options::overwrite_existing);
    }
    fmt::print("saved: {} ({} tensors, f32)\n", o.save_dir, tensors.size());
  }
}

struct Bounds {
  double loss_rel, weight_abs;
};
Bounds check_bounds(DType dtype) { return dtype == DType::F32 ? Bounds{1e-5, 1e-5} : Bounds{2e-2, 2e-2}; }

// Rank 0: the same steps with the unsharded model. Returns whether losses and weights match.
bool check_against_unsharded(const TrainFlags& o, const Tensor& tokens,
                             const std::vector<training::StepResult>& sharded,
                             const std::map<std::string, Tensor>& sharded_weights) {
  const training::TrainOptions options = train_options(o);
  training::Trainer reference(models::load_unsharded(o.model_dir, options.dtype), options,
                              options.dtype == DType::F32 ? nullptr : models::load_unsharded(o.model_dir, DType::F32));
  const std::vector<training::StepResult> expected = train(reference, o, tokens, false);
  auto relative = [](double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); };
  double loss_diff = 0, norm_diff = 0;
  int64_t worst_step = 0;
  for (size_t s = 0; s < expected.size(); ++s) {
    const double rel = relative(sharded[s].loss, expected[s].loss);
    if (rel > loss_diff) std::tie(loss_diff, worst_step) = std::pair{rel, int64_t(s)};
    norm_diff = std::max(norm_diff, relative(sharded[s].grad_norm, expected[s].grad_norm));
  }
  std::vector<std::pair<double, std::string>> weight_diffs;
  for (const auto& [name, value] : reference.weights())
    weight_diffs.emplace_back(max_abs_diff(sharded_weights.at(name), value->tensor()), name);
  std::sort(weight_diffs.rbegin(), weight_diffs.rend());
  const auto [weight_diff, worst_weight] = weight_diffs.at(0);
  const Bounds bounds = check_bounds(options.dtype);
  for (const auto& [diff, name] : weight_diffs) {
    if (diff > bounds.weight_abs) fmt::print("check: weight {} differs by up to {:.3g}\n", name, diff);
  }
  // The gradient norm is held to the loss's bound.
  const bool ok = loss_diff <= bounds.loss_rel && norm_diff <= bounds.loss_rel && weight_diff <= bounds.weight_abs;
  fmt::print(
      "check: loss_max_rel_diff={:.3g} (step {}: {} vs unsharded {}) grad_norm_max_rel_diff={:.3g} "
      "weight_max_abs_diff={:.3g} ({}) {}\n",
      loss_diff, worst_step, sharded[size_t(worst_step)].loss, expected[size_t(worst_step)].loss, norm_diff,
      weight_diff, worst_weight, ok ? "ok" : "MISMATCH");
  if (!ok)
    fmt::print("check: bounds for {}: loss {:g} relative, weights {:g}\n", o.dtype_flag, bounds.loss_rel,
               bounds.weight_abs);
  return ok;
}

int run(Communicator& world, const TrainFlags& o) {
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
  std::optional<Prepared> p = tools::report_on_every_rank(world, [&] { return prepare(o, mesh); });
  if (!p) return 1;
  const bool root = world.rank() == 0;
  if (root) {
    fmt::print(
        "train: {} ({} layers, hidden {}, vocab {}), tokens {} [{}, {}], {} steps of batch {}, {} on {} rank(s)\n",
        o.model_dir, p->config.num_hidden_layers, p->config.hidden_size, p->config.vocab_size, o.tokens_file,
        p->tokens.size(0), p->tokens.size(1), o.steps, o.batch, o.dtype_flag, world.size());
  }
  auto trainer = std::make_unique<training::Trainer>(std::move(p->model), train_options(o), std::move(p->f32_weights));
  const std::vector<training::StepResult> results = train(*trainer, o, p->tokens, root);
  if (!o.save_dir.empty()) save(o, *trainer, mesh, root);
  if (!o.check) return 0;
  const std::map<std::string, Tensor> weights = whole_weights(*trainer, mesh, root);
  trainer.reset();  // frees this rank's shards before rank 0 loads the whole model
  const bool ok = tools::share_verdict(world, root ? check_against_unsharded(o, p->tokens, results, weights) : true);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Trains a checkpoint sharded over every rank on a .npy of token ids (mpirun -np N)."};
    TrainFlags flags;
    programs::add_flags(app, flags);
    if (auto code = tools::parse_on_every_rank(app, argc, argv, world, "train", [&] { programs::check_flags(flags); }))
      return *code;
    return run(world, flags);
  });
}
