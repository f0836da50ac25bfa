// quantized_linear's CPU kernels at SmolLM2-135M's Linear shapes (hidden 576, kv 192, ffn 1536,
// vocab 49152) against the f32 and bf16 Linear the model runs today (tensor/ops.hpp linear: the
// GEMV kernel for one row, oneDNN for more): one row of x (decode) and 16 rows (a prefill tile).
//
// Each row of the table is Google Benchmark's median of 3 repetitions; GB/s counts the weight
// bytes read per call (the matrix's storage). The summary weighs each shape by how often a decode
// step runs it (7 per layer x 30 layers, plus the tied output head), in the calling thread's CPU
// time, which a shared host's other load does not inflate (run it with DTENSOR_NUM_THREADS=1 there;
// with more threads, OpenMP's waits for preempted threads count too). A last case runs a whole
// decode step's 211 distinct matrices, streamed from memory as in generate; the summary is its
// ratio to f32:
//   quant_kernels: q4_0_step_vs_f32=X ... threads=T isa=I
// bench/torch_quant_linear.py times torch.nn.functional.linear f32 at the same shapes and threads.
#include "tensor/cpu/host_cpu.hpp"
#include "tensor/cpu/threads.hpp"
#include "tensor/ops.hpp"
#include "tensor/quant/kernels.hpp"
#include "tensor/quant/quantized.hpp"
#include "tensor/random.hpp"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace dtensor;

namespace {

struct Shape2 {
  const char* name;
  int64_t out, in, per_token;  // per_token: calls in one decode step of the 30-layer model
};

constexpr int kLayers = 30;
const std::vector<Shape2> kShapes = {
    {"q_o", 576, 576, 2 * kLayers}, {"k_v", 192, 576, 2 * kLayers}, {"gate_up", 1536, 576, 2 * kLayers},
    {"down", 576, 1536, kLayers},   {"lm_head", 49152, 576, 1},
};
const std::vector<std::string> kKinds = {"f32", "bf16", "int8", "q8_0", "q4_0", "q4_1", "nf4"};

class MedianCollector : public benchmark::ConsoleReporter {
 public:
  MedianCollector() : ConsoleReporter(OO_Tabular) {}  // no colour codes in saved output
  std::map<std::string, double> median_s;             // CPU seconds of the calling thread (the unit is us)
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.aggregate_name == "median") median_s[run.run_name.function_name] = run.GetAdjustedCPUTime() / 1e6;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

std::string key(const std::string& kind, const Shape2& s, int64_t m) {
  return fmt::format("{}/{}/{}x{}/m{}", kind, s.name, s.out, s.in, m);
}

void register_case(const std::string& kind, const Shape2& s, int64_t m, std::optional<quant::Isa> isa) {
  const Tensor w = random({s.out, s.in}, DType::F32, {.seed = 1, .a = -0.05, .b = 0.05});
  const Tensor x = random({m, s.in}, DType::F32, {.seed = 2, .a = -1.0, .b = 1.0});
  std::function<void()> call;
  int64_t weight_bytes = 0;
  if (kind == "f32" || kind == "bf16") {
    const DType dt = kind == "f32" ? DType::F32 : DType::BF16;
    const Tensor wd = w.to(dt), xd = x.to(dt);
    weight_bytes = int64_t(wd.nbytes());
    call = [wd, xd] { benchmark::DoNotOptimize(linear(xd, wd)); };
  } else {
    const QuantizedMatrix q = QuantizedMatrix::quantize(w, quant_format_from_name(kind));
    weight_bytes = q.bytes();
    call = [q, x] { benchmark::DoNotOptimize(quantized_linear(x, q)); };
  }
  const std::string name = isa ? key(kind + "/" + std::string(quant::isa_name(*isa)), s, m) : key(kind, s, m);
  benchmark::RegisterBenchmark(name.c_str(),
                               [call, isa, weight_bytes](benchmark::State& state) {
                                 quant::set_isa_override(isa);
                                 for (auto _ : state) call();
                                 quant::set_isa_override(std::nullopt);
                                 state.counters["GB/s"] = benchmark::Counter(
                                     double(weight_bytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
                               })
      ->Unit(benchmark::kMicrosecond)
      ->MinTime(0.2)
      ->Repetitions(3)
      ->ReportAggregatesOnly(true);
}

// Seconds one decode step (or one 16-token tile) spends in the model's Linears, per kind.
double per_token_seconds(const MedianCollector& r, const std::string& kind, int64_t m) {
  double total = 0;
  for (const Shape2& s : kShapes) total += double(s.per_token) * r.median_s.at(key(kind, s, m));
  return total;
}

double per_token_bytes(const std::string& kind) {
  double total = 0;
  for (const Shape2& s : kShapes) {
    const double elements = double(s.out) * double(s.in);
    const double per_element = kind == "f32"    ? 4.0
                               : kind == "bf16" ? 2.0
                               : kind == "int8" ? 1.0 + 4.0 / s.in
                               : kind == "q8_0" ? 34.0 / 32
                               : kind == "q4_0" ? 18.0 / 32
                               : kind == "q4_1" ? 20.0 / 32
                                                : 0.5 + 4.0 / 64;
    total += double(s.per_token) * elements * per_element;
  }
  return total;
}

// The 211 weights of one decode step of the 30-layer model (7 per layer, then the head), each a
// distinct matrix as in the model, so they stream from memory as generate's do: the per-shape
// cases above reread one small matrix that stays in cache, which flatters f32 most. One kind's
// weights are held at a time (f32: 536 MB).
struct StepWeights {
  std::string kind;
  std::vector<Tensor> dense;
  std::vector<QuantizedMatrix> quantized;
  Tensor x576, x1536;
};

StepWeights& step_weights(const std::string& kind) {
  static StepWeights held;
  if (held.kind == kind) return held;
  held = StepWeights{kind, {}, {}, Tensor(), Tensor()};
  const bool dense = kind == "f32" || kind == "bf16";
  const DType dt = kind == "bf16" ? DType::BF16 : DType::F32;
  uint64_t seed = 100;
  for (const Shape2& s : kShapes) {
    for (int64_t c = 0; c < s.per_token; ++c) {
      const Tensor w = random({s.out, s.in}, DType::F32, {.seed = ++seed, .a = -0.05, .b = 0.05});
      if (dense) {
        held.dense.push_back(w.to(dt));
      } else {
        held.quantized.push_back(QuantizedMatrix::quantize(w, quant_format_from_name(kind)));
      }
    }
  }
  held.x576 = random({1, 576}, DType::F32, {.seed = 1, .a = -1.0, .b = 1.0}).to(dt);
  held.x1536 = random({1, 1536}, DType::F32, {.seed = 2, .a = -1.0, .b = 1.0}).to(dt);
  return held;
}

void decode_step(benchmark::State& state, const std::string& kind) {
  const StepWeights& w = step_weights(kind);
  for (auto _ : state) {
    for (size_t i = 0; i < w.dense.size(); ++i) {
      benchmark::DoNotOptimize(linear(w.dense[i].size(1) == 576 ? w.x576 : w.x1536, w.dense[i]));
    }
    for (size_t i = 0; i < w.quantized.size(); ++i) {
      benchmark::DoNotOptimize(quantized_linear(w.quantized[i].cols() == 576 ? w.x576 : w.x1536, w.quantized[i]));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  fmt::print("# host: {} | isa: {} | quant kernels: {} | threads: {}\n", cpu::host_cpu_model(), cpu::host_isa(),
             quant::isa_name(quant::active_isa()), cpu::kernel_threads());
  for (int64_t m : {1, 16}) {
    for (const Shape2& s : kShapes) {
      for (const std::string& kind : kKinds) register_case(kind, s, m, std::nullopt);
    }
  }
  // The same q4_0 decode on each narrower instruction set the host has.
  for (quant::Isa isa : {quant::Isa::Avx2, quant::Isa::Scalar}) {
    if (isa < quant::host_isa()) {
      for (const Shape2& s : kShapes) register_case("q4_0", s, 1, isa);
    }
  }
  for (const std::string& kind : kKinds) {
    benchmark::RegisterBenchmark(("decode_step/" + kind).c_str(), decode_step, kind)
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(0.5)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true);
  }
  benchmark::Initialize(&argc, argv);
  MedianCollector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  if (reporter.median_s.size() < kShapes.size() * kKinds.size() * 2 + kKinds.size()) return 0;  // filtered run

  fmt::print("\n# per decode step / per 16-token tile: the model's {} Linear calls, CPU time medians\n",
             2 * kLayers * 3 + kLayers + 1);
  fmt::print("{:>6} {:>12} {:>10} {:>12} {:>12} {:>10} {:>14} {:>10}\n", "kind", "decode ms", "GB/s", "x f32",
             "tile ms", "x f32", "step ms (cold)", "x f32");
  const double f32_decode = per_token_seconds(reporter, "f32", 1), f32_tile = per_token_seconds(reporter, "f32", 16);
  const double f32_step = reporter.median_s.at("decode_step/f32");
  std::string summary = "quant_kernels:";
  for (const std::string& kind : kKinds) {
    const double decode = per_token_seconds(reporter, kind, 1), tile = per_token_seconds(reporter, kind, 16);
    const double step = reporter.median_s.at("decode_step/" + kind);
    fmt::print("{:>6} {:>12.3f} {:>10.2f} {:>12.2f} {:>12.3f} {:>10.2f} {:>14.3f} {:>10.2f}\n", kind, decode * 1e3,
               per_token_bytes(kind) / decode / 1e9, f32_decode / decode, tile * 1e3, f32_tile / tile, step * 1e3,
               f32_step / step);
    if (kind != "f32") summary += fmt::format(" {}_step_vs_f32={:.2f}", kind, f32_step / step);
  }
  fmt::print("{} threads={} isa={}\n", summary, cpu::kernel_threads(), quant::isa_name(quant::active_isa()));
  return 0;
}
