// `make bench-redistribute`: DTensor::redistribute against the single collective it needs,
// called directly through our collectives layer on the same bytes.
//
//   scripts/mpirun.sh -np 2 build/bench/bench_redistribute [--iters N] [--sizes-mib 1,64]
//
// 1-D mesh over all ranks: S0->R, S1->R, P->R, P->S0, S0->S1, R->S0 and an uneven S0->R, at each
// size; then, on 4 ranks, 2-D cases on a 2x2 mesh (time only: several steps). A time is the
// slowest rank's for one call, median over iterations; both sides run alternately so background
// load hits them alike. The last line is the worst ratio (redistribute / raw) over the 1-D
// transitions with a collective at the largest size.
#include "collectives/runtime.hpp"
#include "dtensor/dtensor.hpp"
#include "tensor/random.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <functional>

using namespace dtensor;

namespace {

double slowest_us(Communicator& world, const std::function<void()>& fn) {
  world.barrier();
  auto start = std::chrono::steady_clock::now();
  fn();
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  auto t = Tensor::from_vector<double>({us}, {1});
  world.all_reduce(t, ReduceOp::Max);
  return t.item<double>();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Case {
  std::string name;
  Placements src, dst;
  Shape shape;
};

// The raw collective on the same bytes as the case's redistribute, through Communicator.
std::function<void()> raw_call(Communicator comm, const Case& c, const DTensor& x) {
  const int n = comm.size();
  Tensor local = x.to_local().contiguous();
  Tensor full = Tensor::empty(c.shape, DType::F32);
  const auto& to = c.dst[0];
  const auto& from = c.src[0];
  if (from.is_shard() && to.is_replicate()) {
    std::vector<int64_t> counts = chunk_sizes(c.shape[0], n);
    for (auto& k : counts) k *= shape_numel(c.shape) / c.shape[0];
    return [=]() mutable { comm.all_gather_v(local, full, counts); };
  }
  if (from.is_partial() && to.is_replicate()) return [=]() mutable { comm.all_reduce(local, full, ReduceOp::Sum); };
  if (from.is_partial()) {
    Tensor out = Tensor::empty({local.numel() / n}, DType::F32);
    return [=]() mutable { comm.reduce_scatter(local, out); };
  }
  if (from.is_shard() && to.is_shard()) {
    Tensor out = Tensor::empty({local.numel()}, DType::F32);
    return [=]() mutable { comm.all_to_all(local.view({-1}), out); };
  }
  return {};
}

struct Row {
  std::string name;
  double mib;
  double ours_us;
  double raw_us;  // 0 where no collective is needed
};

Row run_case(Communicator& world, const DeviceMesh& mesh, const Case& c, int iters) {
  Tensor full = random(c.shape, DType::F32, {.seed = 3});
  Placements replicated(size_t(mesh.ndim()), Replicate());
  DTensor x = DTensor::distribute(full, mesh, replicated).redistribute(c.src);
  std::function<void()> raw = mesh.ndim() == 1 ? raw_call(mesh.comm(0), c, x) : std::function<void()>();
  std::vector<double> ours, theirs;
  for (int i = 0; i < iters + 2; ++i) {
    double t = slowest_us(world, [&] { x.redistribute(c.dst); });
    double r = raw ? slowest_us(world, raw) : 0.0;
    if (i < 2) continue;  // warm-up: plans cached, pages touched
    ours.push_back(t);
    theirs.push_back(r);
  }
  return {c.name, double(shape_numel(c.shape)) * 4 / (1 << 20), median(ours), median(theirs)};
}

std::vector<Case> one_d_cases(int64_t mib) {
  // A square f32 matrix of `mib` MiB; the uneven case drops one row.
  int64_t side = int64_t(std::sqrt(double(mib << 20) / 4));
  Shape sq = {side, side};
  Shape uneven = {side - 1, side};
  return {{"S0->R", {Shard(0)}, {Replicate()}, sq},
          {"S1->R", {Shard(1)}, {Replicate()}, sq},
          {"P->R", {Partial()}, {Replicate()}, sq},
          {"P->S0", {Partial()}, {Shard(0)}, sq},
          {"S0->S1", {Shard(0)}, {Shard(1)}, sq},
          {"R->S0", {Replicate()}, {Shard(0)}, sq},
          {"uneven S0->R", {Shard(0)}, {Replicate()}, uneven}};
}

std::vector<Case> two_d_cases(int64_t mib) {
  int64_t side = int64_t(std::sqrt(double(mib << 20) / 4));
  Shape sq = {side, side};
  return {{"(S0,S1)->(R,R)", {Shard(0), Shard(1)}, {Replicate(), Replicate()}, sq},
          {"(P,P)->(R,R)", {Partial(), Partial()}, {Replicate(), Replicate()}, sq},
          {"(S0,S0)->(R,S0)", {Shard(0), Shard(0)}, {Replicate(), Shard(0)}, sq},
          {"(S1,S1)->(S1,S0)", {Shard(1), Shard(1)}, {Shard(1), Shard(0)}, sq},
          {"(P,S0)->(R,R)", {Partial(), Shard(0)}, {Replicate(), Replicate()}, sq}};
}

void print_rows(const std::vector<Row>& rows, int np, const std::string& mesh) {
  fmt::print("\n# mesh {} on {} ranks, f32\n", mesh, np);
  fmt::print("{:>18} {:>8} {:>14} {:>14} {:>8}\n", "transition", "MiB", "redistribute us", "raw us", "ratio");
  for (const Row& r : rows) {
    std::string raw = r.raw_us > 0 ? fmt::format("{:.1f}", r.raw_us) : "-";
    std::string ratio = r.raw_us > 0 ? fmt::format("{:.2f}", r.ours_us / r.raw_us) : "-";
    fmt::print("{:>18} {:>8.1f} {:>14.1f} {:>14} {:>8}\n", r.name, r.mib, r.ours_us, raw, ratio);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app("redistribute vs the raw collective");
    int iters = 10;
    std::vector<int64_t> sizes = {1, 64};
    app.add_option("--iters", iters, "timed iterations per case");
    app.add_option("--sizes-mib", sizes, "tensor sizes in MiB")->delimiter(',');
    app.parse(argc, argv);

    const int np = world.size();
    double worst = 0;
    DeviceMesh line = DeviceMesh::from_world({np});
    for (int64_t mib : sizes) {
      std::vector<Row> rows;
      for (const Case& c : one_d_cases(mib)) rows.push_back(run_case(world, line, c, iters));
      if (world.rank() == 0) print_rows(rows, np, fmt::format("[{}]", np));
      if (mib != sizes.back()) continue;
      for (const Row& r : rows)
        if (r.raw_us > 0) worst = std::max(worst, r.ours_us / r.raw_us);
    }
    if (np == 4) {
      DeviceMesh square = DeviceMesh::from_world({2, 2});
      for (int64_t mib : sizes) {
        std::vector<Row> rows;
        for (const Case& c : two_d_cases(mib)) rows.push_back(run_case(world, square, c, iters));
        if (world.rank() == 0) print_rows(rows, np, "[2, 2]");
      }
    }
    if (world.rank() == 0) fmt::print("redistribute: worst_ratio={:.2f} np={}\n", worst, np);
    return 0;
  });
}
