// `make bench-dispatch`: what a DTensor op costs beyond the local op it runs.
//
//   scripts/mpirun.sh -np 1 build/bench/bench_dispatch [--benchmark_repetitions=N]
//
// Each case runs the DTensor op on small f32 tensors with placements that need no
// communication (so the difference is the rule lookup, the checks and the wrapping), and the
// same local op on the local blocks, through Google Benchmark with warm caches. Every rank
// measures its own ops (none of them communicates); rank 0 prints. The table gives the median
// per case. With 2 ranks or more it then times a DTensor op that communicates (Partial to
// Replicate: one all_reduce of 1 KiB and of 16 KiB) with the collective fingerprints of
// DTENSOR_DEBUG=collectives off and on, every rank in step (a plain loop: Google Benchmark picks
// iteration counts per rank, which a collective cannot follow). The last line is the median extra
// microseconds of add on 64x64 f32 and, from 2 ranks, what the fingerprints add to one collective.
#include "collectives/call_check.hpp"
#include "collectives/runtime.hpp"
#include "dtensor/ops.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>

using namespace dtensor;

namespace {

struct Case {
  std::string name;
  std::function<void()> dtensor_op;
  std::function<void()> local_op;
};

DTensor placed(const Shape& shape, const DeviceMesh& mesh, Placement p) {
  return DTensor::distribute(random(shape, DType::F32, {.seed = 1}), mesh, {p});
}

// Placements that need no communication: matching shards for add, row-sharded a with a
// replicated b for matmul, a sum over the unsharded dim.
std::vector<Case> cases(const DeviceMesh& mesh) {
  std::vector<Case> out;
  for (int64_t n : {1, 64}) {
    std::string size = fmt::format("{}x{}", n, n);
    DTensor a = placed({n, n}, mesh, Shard(0)), b = placed({n, n}, mesh, Shard(0));
    DTensor w = placed({n, n}, mesh, Replicate());
    Tensor la = a.to_local(), lb = b.to_local(), lw = w.to_local();
    out.push_back(
        {"add " + size, [=] { benchmark::DoNotOptimize(add(a, b)); }, [=] { benchmark::DoNotOptimize(add(la, lb)); }});
    out.push_back({"matmul " + size, [=] { benchmark::DoNotOptimize(matmul(a, w)); },
                   [=] { benchmark::DoNotOptimize(matmul(la, lw)); }});
    out.push_back({"sum " + size, [=] { benchmark::DoNotOptimize(sum(a, {1})); },
                   [=] { benchmark::DoNotOptimize(sum(la, {1})); }});
  }
  return out;
}

// Collects the median real time (us) of every benchmark while the console reporter prints.
class MedianCollector : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> median_us;

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.aggregate_name == "median") median_us[run.run_name.function_name] = run.GetAdjustedRealTime() / 1e3;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

// For the ranks other than 0: they run the same benchmarks (alike load) and print nothing.
class Silent : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

// Median over 7 runs of the microseconds per redistribute of a Partial n x n to Replicate, with
// the fingerprints on or off (every rank runs the same loop).
double partial_to_replicate_us(Communicator& world, const DeviceMesh& mesh, int64_t n, bool checks) {
  detail::set_collective_checks(checks);
  const DTensor partial = DTensor::from_local(random({n, n}, DType::F32, {.seed = 2}), mesh, {Partial()});
  constexpr int kIterations = 2000;
  std::vector<double> runs;
  for (int run = 0; run < 7; ++run) {
    world.barrier();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kIterations; ++i) benchmark::DoNotOptimize(partial.redistribute({Replicate()}));
    runs.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() /
                   kIterations);
  }
  std::nth_element(runs.begin(), runs.begin() + 3, runs.end());
  return runs[3];
}

// The fingerprints' cost per collective; returns it for 1 KiB.
double print_check_cost(Communicator& world, const DeviceMesh& mesh) {
  const bool initially = detail::collective_checks_enabled();
  if (world.rank() == 0) {
    fmt::print("\n# Partial -> Replicate (one all_reduce), f32, {} ranks, collective fingerprints off / on\n",
               world.size());
    fmt::print("{:>14} {:>12} {:>12} {:>12}\n", "op", "off us", "on us", "cost us");
  }
  double cost_1k = 0;
  for (int64_t n : {16, 64}) {
    const double off = partial_to_replicate_us(world, mesh, n, false);
    const double on = partial_to_replicate_us(world, mesh, n, true);
    if (world.rank() == 0)
      fmt::print("{:>14} {:>12.3f} {:>12.3f} {:>12.3f}\n", fmt::format("{} KiB", n * n * 4 / 1024), off, on, on - off);
    if (n == 16) cost_1k = on - off;
  }
  detail::set_collective_checks(initially);
  return cost_1k;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    DeviceMesh mesh = DeviceMesh::from_world({world.size()});
    std::vector<Case> all = cases(mesh);
    for (const Case& c : all) {
      for (const auto& [suffix, fn] : {std::pair{"dtensor", c.dtensor_op}, std::pair{"local", c.local_op}}) {
        fn();  // warm: the first call decides and caches the rule
        benchmark::RegisterBenchmark((c.name + " " + suffix).c_str(),
                                     [fn = fn](benchmark::State& state) {
                                       for (auto _ : state) fn();
                                     })
            ->Unit(benchmark::kNanosecond)
            ->Repetitions(9)
            ->ReportAggregatesOnly(true);
      }
    }
    // Rank 0 prints; the others run the same benchmarks quietly so their load is alike.
    std::vector<char*> args(argv, argv + argc);
    int count = int(args.size());
    benchmark::Initialize(&count, args.data());
    MedianCollector reporter;
    Silent quiet;
    if (world.rank() == 0) {
      benchmark::RunSpecifiedBenchmarks(&reporter);
    } else {
      benchmark::RunSpecifiedBenchmarks(&quiet);
    }
    world.barrier();
    const double check_cost = world.size() > 1 ? print_check_cost(world, mesh) : 0.0;
    if (world.rank() != 0) return 0;

    fmt::print("\n# DTensor op minus the local op, f32, {} rank(s), medians\n", world.size());
    fmt::print("{:>14} {:>12} {:>12} {:>12}\n", "op", "dtensor us", "local us", "overhead us");
    double headline = 0;
    for (const Case& c : all) {
      double d = reporter.median_us[c.name + " dtensor"], l = reporter.median_us[c.name + " local"];
      fmt::print("{:>14} {:>12.3f} {:>12.3f} {:>12.3f}\n", c.name, d, l, d - l);
      if (c.name == "add 64x64") headline = d - l;
    }
    if (world.size() > 1) {
      fmt::print("dispatch: overhead_us={:.2f} np={} check_cost_us={:.2f}\n", headline, world.size(), check_cost);
    } else {
      fmt::print("dispatch: overhead_us={:.2f} np={}\n", headline, world.size());
    }
    return 0;
  });
}
