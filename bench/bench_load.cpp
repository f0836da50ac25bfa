// `make bench-load`: loading a sharded checkpoint through the real path (Checkpoint::open, a
// Llama-shaped module tree, apply_tp_plan with colwise / rowwise / vocab-parallel embedding
// rules) and the peak resident memory it costs each rank.
//
//   scripts/mpirun.sh -np 1 build/bench/bench_load --dir CKPT --write-only   # write, or reuse
//   scripts/mpirun.sh -np 4 build/bench/bench_load --dir CKPT                # load at TP 4
//
// --write-only writes (or reuses, when it is there and holds exactly the tensors below) a ~400 MB
// f32 checkpoint of a 4-layer model (hidden 1024, intermediate 4096, vocab 32000), split over 3
// files with model.safetensors.index.json. It is its own process, so writing never inflates the
// loading ranks' VmHWM. A load run measures, per rank:
//   base_MiB   VmHWM after MPI init and mesh setup, before loading: the fixed cost
//   load_s     Checkpoint::open + apply_tp_plan, slowest part of the barrier-to-barrier time
//   VmHWM_MiB  peak resident memory, read from /proc/self/status right after the load
//   share_MiB  checkpoint bytes / TP size; held_MiB  the bytes of this rank's parameters
//   raw_s      pread of the same number of bytes from the files into one fresh buffer (the page
//              cache is warm in both: the checkpoint was just written or loaded)
//   ratio      VmHWM / (share + 100 MiB)
// then checks every loaded block against the generator (random_block), after the measurement.
// A run ends with `load-run: tp=N rss_ratio=X ...` (its worst rank); the Makefile runs TP 4 and
// then TP 2 and prints the last line `load: rss_ratio=X`, the worst over both runs.
#include "collectives/runtime.hpp"
#include "io/checkpoint.hpp"
#include "io/checkpoint_writer.hpp"
#include "nn/layers.hpp"
#include "nn/tp_plan.hpp"
#include "placements/sharding.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

using namespace dtensor;
namespace fs = std::filesystem;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kAllowanceMiB = 100.0;  // the fixed per-process allowance of the target
constexpr uint64_t kMaxShardBytes = 150'000'000;
constexpr const char* kSpecKey = "dtensor_bench_load";

struct ModelSpec {
  int64_t layers = 4, hidden = 1024, intermediate = 4096, vocab = 32000;
  std::string str() const {
    return fmt::format("layers={} hidden={} intermediate={} vocab={} f32", layers, hidden, intermediate, vocab);
  }
};

// Every parameter (Hugging Face Llama names) with its shape, in checkpoint order.
std::vector<std::pair<std::string, Shape>> parameter_shapes(const ModelSpec& s) {
  std::vector<std::pair<std::string, Shape>> out = {{"model.embed_tokens.weight", {s.vocab, s.hidden}}};
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"})
      out.push_back({p + "self_attn." + proj + ".weight", {s.hidden, s.hidden}});
    out.push_back({p + "mlp.gate_proj.weight", {s.intermediate, s.hidden}});
    out.push_back({p + "mlp.up_proj.weight", {s.intermediate, s.hidden}});
    out.push_back({p + "mlp.down_proj.weight", {s.hidden, s.intermediate}});
    out.push_back({p + "input_layernorm.weight", {s.hidden}});
    out.push_back({p + "post_attention_layernorm.weight", {s.hidden}});
  }
  out.push_back({"model.norm.weight", {s.hidden}});
  return out;
}

uint64_t seed_of(size_t index) { return 1000 + index; }

// Whether `dir` holds exactly this model's checkpoint (headers validated by open()).
bool checkpoint_matches(const std::string& dir, const ModelSpec& spec) {
  try {
    const io::Checkpoint ckpt = io::Checkpoint::open(dir);
    const auto shapes = parameter_shapes(spec);
    if (ckpt.names().size() != shapes.size() || ckpt.files().size() < 2) return false;
    for (const auto& [name, shape] : shapes) {
      if (!ckpt.contains(name) || ckpt.info(name).shape != shape || ckpt.info(name).dtype != DType::F32) return false;
    }
    const auto& metadata = ckpt.file_of(shapes.front().first).metadata();
    auto it = metadata.find(kSpecKey);
    return it != metadata.end() && it->second == spec.str();
  } catch (const Error&) {
    return false;
  }
}

void write_checkpoint(const std::string& dir, const ModelSpec& spec) {
  if (checkpoint_matches(dir, spec)) {
    fmt::print("bench_load: reusing {} ({})\n", dir, spec.str());
    return;
  }
  const auto shapes = parameter_shapes(spec);
  io::NamedTensors tensors;
  for (size_t i = 0; i < shapes.size(); ++i) {
    tensors.emplace_back(shapes[i].first, random(shapes[i].second, DType::F32, {.seed = seed_of(i), .a = -1, .b = 1}));
  }
  io::save_checkpoint(dir, tensors, kMaxShardBytes, {{kSpecKey, spec.str()}});
  fmt::print("bench_load: wrote {} ({}, {} files)\n", dir, spec.str(), io::Checkpoint::open(dir).files().size());
}

// The module tree the checkpoint names: containers are plain modules.
std::shared_ptr<nn::Module> build_model(const ModelSpec& s) {
  auto root = std::make_shared<nn::Module>("LlamaForCausalLM");
  auto model = root->add_module("model", std::make_shared<nn::Module>("LlamaModel"));
  model->add_module("embed_tokens", std::make_shared<nn::Embedding>(s.vocab, s.hidden));
  auto layers = model->add_module("layers", std::make_shared<nn::Module>("Layers"));
  for (int64_t i = 0; i < s.layers; ++i) {
    auto layer = layers->add_module(std::to_string(i), std::make_shared<nn::Module>("DecoderLayer"));
    auto attn = layer->add_module("self_attn", std::make_shared<nn::Module>("Attention"));
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"})
      attn->add_module(proj, std::make_shared<nn::Linear>(s.hidden, s.hidden, /*bias=*/false));
    auto mlp = layer->add_module("mlp", std::make_shared<nn::Module>("MLP"));
    mlp->add_module("gate_proj", std::make_shared<nn::Linear>(s.hidden, s.intermediate, false));
    mlp->add_module("up_proj", std::make_shared<nn::Linear>(s.hidden, s.intermediate, false));
    mlp->add_module("down_proj", std::make_shared<nn::Linear>(s.intermediate, s.hidden, false));
    layer->add_module("input_layernorm", std::make_shared<nn::RMSNorm>(s.hidden));
    layer->add_module("post_attention_layernorm", std::make_shared<nn::RMSNorm>(s.hidden));
  }
  model->add_module("norm", std::make_shared<nn::RMSNorm>(s.hidden));
  return root;
}

nn::TpPlan tp_plan() {
  return {{{"model.embed_tokens", "rowwise"},
           {"model.layers.*.self_attn.q_proj", "colwise"},
           {"model.layers.*.self_attn.k_proj", "colwise"},
           {"model.layers.*.self_attn.v_proj", "colwise"},
           {"model.layers.*.self_attn.o_proj", "rowwise"},
           {"model.layers.*.mlp.gate_proj", "colwise"},
           {"model.layers.*.mlp.up_proj", "colwise"},
           {"model.layers.*.mlp.down_proj", "rowwise"}}};
}

// Peak resident memory of this process so far, in MiB.
double vm_hwm_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:  1234 kB"
  }
  fail("bench_load", "no VmHWM line in /proc/self/status");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Reads this rank's 1/tp of every file (the same number of bytes a rank loads) with pread into
// one fresh buffer; returns the seconds it took.
double raw_read_seconds(const io::Checkpoint& ckpt, int rank, int tp) {
  std::vector<std::pair<fs::path, std::pair<uint64_t, uint64_t>>> ranges;  // file, [begin, end)
  uint64_t total = 0;
  for (const std::string& name : ckpt.files()) {
    const fs::path path = fs::path(ckpt.directory()) / name;
    const uint64_t size = fs::file_size(path);
    const uint64_t begin = size * uint64_t(rank) / uint64_t(tp), end = size * uint64_t(rank + 1) / uint64_t(tp);
    ranges.push_back({path, {begin, end}});
    total += end - begin;
  }
  const auto start = std::chrono::steady_clock::now();
  Tensor buffer = Tensor::empty({int64_t(total)}, DType::U8);
  auto* out = static_cast<char*>(buffer.data_ptr());
  for (const auto& [path, range] : ranges) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    check(fd >= 0, "bench_load", "cannot open {}", path.string());
    for (uint64_t at = range.first; at < range.second;) {
      const ssize_t n = ::pread(fd, out, range.second - at, off_t(at));
      check(n > 0, "bench_load", "pread {} failed", path.string());
      out += n;
      at += uint64_t(n);
    }
    ::close(fd);
  }
  return seconds_since(start);
}

// Whether every loaded parameter equals the generator's block of it (allocates: run after the
// measurement).
bool loaded_values_match(nn::Module& root, const ModelSpec& spec, const DeviceMesh& mesh) {
  const auto shapes = parameter_shapes(spec);
  bool all = true;
  for (auto& [name, value] : root.named_parameters()) {
    const size_t index = size_t(
        std::find_if(shapes.begin(), shapes.end(), [&](const auto& s) { return s.first == name; }) - shapes.begin());
    const Shape& shape = shapes.at(index).second;
    Block block{shape, Shape(shape.size(), 0)};
    if (value->is_distributed())
      block = local_block(shape, mesh.shape(), mesh.coordinate(), value->dtensor().placements());
    const Tensor expected =
        random_block(shape, block.offset, block.shape, DType::F32, {.seed = seed_of(index), .a = -1, .b = 1});
    all = all && equal(value->local(), expected);
  }
  return all;
}

struct RankResult {
  double base_mib, load_s, hwm_mib, held_mib, raw_s, verified;
};

RankResult load_and_measure(Communicator& world, const std::string& dir, const ModelSpec& spec) {
  const DeviceMesh mesh = DeviceMesh::from_world({world.size()}, {"tp"});
  RankResult r{};
  r.base_mib = vm_hwm_mib();
  world.barrier();
  const auto start = std::chrono::steady_clock::now();
  const io::Checkpoint ckpt = io::Checkpoint::open(dir, {.progress = io::stderr_progress(world.rank())});
  auto root = build_model(spec);
  nn::apply_tp_plan(*root, tp_plan(), mesh, [&](const std::string& name) { return ckpt.source(name); });
  r.load_s = seconds_since(start);
  r.hwm_mib = vm_hwm_mib();  // before anything below allocates
  for (auto& [name, value] : root->named_parameters()) r.held_mib += double(value->local().nbytes()) / kMiB;
  world.barrier();
  r.raw_s = raw_read_seconds(ckpt, world.rank(), world.size());
  r.verified = loaded_values_match(*root, spec, mesh) ? 1 : 0;
  return r;
}

uint64_t checkpoint_bytes(const std::string& dir) {
  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  uint64_t total = 0;
  for (const std::string& name : ckpt.names()) total += uint64_t(shape_numel(ckpt.info(name).shape)) * 4;
  return total;
}

void print_table(const std::vector<RankResult>& results, uint64_t bytes, int tp) {
  const double share = double(bytes) / tp / kMiB;
  fmt::print(
      "# load: {:.1f} MiB checkpoint, TP {}, share {:.1f} MiB per rank, target VmHWM <= 1.15 x (share + {} MiB)\n",
      double(bytes) / kMiB, tp, share, kAllowanceMiB);
  fmt::print("{:>4} {:>9} {:>8} {:>10} {:>10} {:>9} {:>8} {:>7} {:>8}\n", "rank", "base_MiB", "load_s", "VmHWM_MiB",
             "share_MiB", "held_MiB", "raw_s", "ratio", "values");
  double worst = 0, slowest = 0, raw = 0;
  int worst_rank = 0;
  for (size_t rank = 0; rank < results.size(); ++rank) {
    const RankResult& r = results[rank];
    const double ratio = r.hwm_mib / (share + kAllowanceMiB);
    if (ratio > worst) worst = ratio, worst_rank = int(rank);
    slowest = std::max(slowest, r.load_s);
    raw = std::max(raw, r.raw_s);
    fmt::print("{:>4} {:>9.1f} {:>8.3f} {:>10.1f} {:>10.1f} {:>9.1f} {:>8.3f} {:>7.3f} {:>8}\n", rank, r.base_mib,
               r.load_s, r.hwm_mib, share, r.held_mib, r.raw_s, ratio, r.verified == 1 ? "ok" : "WRONG");
  }
  fmt::print("load-run: tp={} rss_ratio={:.3f} worst_rank={} load_s={:.3f} raw_read_s={:.3f} base_mib={:.1f}\n", tp,
             worst, worst_rank, slowest, raw, results[size_t(worst_rank)].base_mib);
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app("sharded checkpoint loading: time and peak resident memory per rank");
    std::string dir = "build/bench-load-ckpt";
    bool write_only = false;
    app.add_option("--dir", dir, "checkpoint directory (written by --write-only)");
    app.add_flag("--write-only", write_only, "write the checkpoint (or reuse a valid one) and exit");
    app.parse(argc, argv);
    const ModelSpec spec;
    if (write_only) {
      if (world.rank() == 0) write_checkpoint(dir, spec);
      return 0;
    }
    check(checkpoint_matches(dir, spec), "bench_load", "{} holds no checkpoint of {}: run with --write-only first", dir,
          spec.str());
    const RankResult mine = load_and_measure(world, dir, spec);
    const Tensor row = Tensor::from_vector<double>(
        {mine.base_mib, mine.load_s, mine.hwm_mib, mine.held_mib, mine.raw_s, mine.verified}, {6});
    Tensor all = Tensor::empty({int64_t(world.size()) * 6}, DType::F64);
    world.all_gather(row, all);
    const std::vector<double> v = all.to_vector<double>();
    std::vector<RankResult> results;
    for (size_t r = 0; r < size_t(world.size()); ++r)
      results.push_back({v[6 * r], v[6 * r + 1], v[6 * r + 2], v[6 * r + 3], v[6 * r + 4], v[6 * r + 5]});
    if (world.rank() == 0) print_table(results, checkpoint_bytes(dir), world.size());
    const bool verified =
        std::all_of(results.begin(), results.end(), [](const RankResult& r) { return r.verified == 1; });
    return verified ? 0 : 1;
  });
}
