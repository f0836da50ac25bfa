// `make demo`: every collective on both dims of a 2x2 ("dp", "tp") DeviceMesh, each result
// checked against the value this rank computes on its own.
//
//   scripts/mpirun.sh -np 4 build/examples/collectives_demo [--elements N] [--repeats R]
//
// Rank 0 prints one row per (collective, mesh dim) with the slowest rank's best time and whether
// the check passed on every rank, then the call and byte counters of its two communicators. The
// exit code is non-zero on every rank if any check failed anywhere.
#include "collectives/runtime.hpp"
#include "mesh/device_mesh.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>

using namespace dtensor;

namespace {

// One mesh dim as this rank sees it: its communicator and the world ranks on it, in order.
struct Line {
  std::string dim;
  Communicator comm;
  std::vector<int> ranks;
  int64_t me = 0;  // this rank's position on the line
  int size() const { return int(ranks.size()); }
};

Line line_of(const DeviceMesh& mesh, const std::string& dim) {
  DeviceMesh sub = mesh[dim];
  return {dim, sub.comm(0), sub.ranks(), sub.local_rank(0)};
}

// Element i of the block that world rank `src` sends to line position `dst`. Small integers, so
// sums over a line are exact in f32 and every element says where it came from.
float element(int64_t src, int64_t dst, int64_t i) { return float(src * 1000 + dst * 100 + i % 97); }

// Uneven block sizes for the _v forms: n/2, n, 3n/2, ... by line position.
int64_t uneven_count(int64_t position, int64_t n) { return n * (position + 1) / 2; }
// all_to_all_v sends a different amount between every pair.
int64_t pair_count(int64_t src, int64_t dst, int64_t n) { return n * (1 + src + 2 * dst) / 4; }

std::vector<int64_t> counts_of(int size, const std::function<int64_t(int64_t)>& count) {
  std::vector<int64_t> counts(static_cast<size_t>(size));
  for (int64_t j = 0; j < size; ++j) counts[size_t(j)] = count(j);
  return counts;
}

// A flat f32 tensor of consecutive blocks; element i of block j is value(j, i).
Tensor blocks(const std::vector<int64_t>& counts, const std::function<float(int64_t, int64_t)>& value) {
  Tensor t = Tensor::empty({std::accumulate(counts.begin(), counts.end(), int64_t(0))}, DType::F32);
  float* p = t.data<float>();
  for (size_t j = 0; j < counts.size(); ++j) {
    for (int64_t i = 0; i < counts[j]; ++i) *p++ = value(int64_t(j), i);
  }
  return t;
}

bool blocks_equal(const Tensor& t, const std::vector<int64_t>& counts,
                  const std::function<float(int64_t, int64_t)>& expected) {
  return t.to_vector<float>() == blocks(counts, expected).to_vector<float>();
}

// The sum over the line of what each rank put at (block, i).
std::function<float(int64_t, int64_t)> line_sum(const Line& line, int64_t block) {
  return [&line, block](int64_t, int64_t i) {
    float sum = 0;
    for (int r : line.ranks) sum += element(r, block, i);
    return sum;
  };
}

// The barrier keeps one rank's set-up and checking out of the others' measured time.
double measure_us(Communicator& comm, const std::function<void()>& call) {
  comm.barrier();
  auto start = std::chrono::steady_clock::now();
  call();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
}

struct Outcome {
  double time_us;
  bool ok;
};

// Each case prepares its inputs, times the one collective call, and checks the result.
using CaseFn = std::function<Outcome(Line&, int64_t n)>;

Outcome all_reduce(Line& line, int64_t n) {
  const int me = line.ranks[line.me];
  Tensor buffer = blocks({n}, [&](int64_t, int64_t i) { return element(me, 0, i); });
  double us = measure_us(line.comm, [&] { line.comm.all_reduce(buffer, ReduceOp::Sum); });
  return {us, blocks_equal(buffer, {n}, line_sum(line, 0))};
}

Outcome broadcast(Line& line, int64_t n) {
  const int64_t root = line.size() - 1;
  const int root_rank = line.ranks[root];
  auto root_value = [&](int64_t, int64_t i) { return element(root_rank, 0, i); };
  Tensor buffer = line.me == root ? blocks({n}, root_value) : Tensor::full({n}, -1.0, DType::F32);
  double us = measure_us(line.comm, [&] { line.comm.broadcast(buffer, int(root)); });
  return {us, blocks_equal(buffer, {n}, root_value)};
}

Outcome all_gather(Line& line, int64_t n) {
  const int me = line.ranks[line.me];
  Tensor in = blocks({n}, [&](int64_t, int64_t i) { return element(me, 0, i); });
  Tensor out = Tensor::empty({line.size() * n}, DType::F32);
  double us = measure_us(line.comm, [&] { line.comm.all_gather(in, out); });
  std::vector<int64_t> counts(size_t(line.size()), n);
  return {us, blocks_equal(out, counts, [&](int64_t j, int64_t i) { return element(line.ranks[j], 0, i); })};
}

Outcome all_gather_v(Line& line, int64_t n) {
  const int me = line.ranks[line.me];
  std::vector<int64_t> counts = counts_of(line.size(), [&](int64_t j) { return uneven_count(j, n); });
  Tensor in = blocks({counts[line.me]}, [&](int64_t, int64_t i) { return element(me, 0, i); });
  Tensor out = Tensor::empty({std::accumulate(counts.begin(), counts.end(), int64_t(0))}, DType::F32);
  double us = measure_us(line.comm, [&] { line.comm.all_gather_v(in, out, counts); });
  return {us, blocks_equal(out, counts, [&](int64_t j, int64_t i) { return element(line.ranks[j], 0, i); })};
}

Outcome reduce_scatter(Line& line, int64_t n) {
  const int me = line.ranks[line.me];
  std::vector<int64_t> counts(size_t(line.size()), n);
  Tensor in = blocks(counts, [&](int64_t j, int64_t i) { return element(me, j, i); });
  Tensor out = Tensor::empty({n}, DType::F32);
  double us = measure_us(line.comm, [&] { line.comm.reduce_scatter(in, out, ReduceOp::Sum); });
  return {us, blocks_equal(out, {n}, line_sum(line, line.me))};
}

Outcome reduce_scatter_v(Line& line, int64_t n) {
  const int me = line.ranks[line.me];
  std::vector<int64_t> counts = counts_of(line.size(), [&](int64_t j) { return uneven_count(j, n); });
  Tensor in = blocks(counts, [&](int64_t j, int64_t i) { return element(me, j, i); });
  Tensor out = Tensor::empty({counts[line.me]}, DType::F32);
  double us = measure_us(line.comm, [&] { line.comm.reduce_scatter_v(in, out, counts, ReduceOp::Sum); });
  return {us, blocks_equal(out, {counts[line.me]}, line_sum(line, line.me))};
}

Outcome all_to_all(Line& line, int64_t n) {
  const int me = line.ranks[line.me];
  std::vector<int64_t> counts(size_t(line.size()), n);
  Tensor in = blocks(counts, [&](int64_t j, int64_t i) { return element(me, j, i); });
  Tensor out = Tensor::empty({line.size() * n}, DType::F32);
  double us = measure_us(line.comm, [&] { line.comm.all_to_all(in, out); });
  return {us, blocks_equal(out, counts, [&](int64_t j, int64_t i) { return element(line.ranks[j], line.me, i); })};
}

Outcome all_to_all_v(Line& line, int64_t n) {
  const int me = line.ranks[line.me];
  std::vector<int64_t> send = counts_of(line.size(), [&](int64_t j) { return pair_count(line.me, j, n); });
  std::vector<int64_t> recv = counts_of(line.size(), [&](int64_t j) { return pair_count(j, line.me, n); });
  Tensor in = blocks(send, [&](int64_t j, int64_t i) { return element(me, j, i); });
  Tensor out = Tensor::empty({std::accumulate(recv.begin(), recv.end(), int64_t(0))}, DType::F32);
  double us = measure_us(line.comm, [&] { line.comm.all_to_all_v(in, send, out, recv); });
  return {us, blocks_equal(out, recv, [&](int64_t j, int64_t i) { return element(line.ranks[j], line.me, i); })};
}

struct Case {
  const char* name;
  CollectiveKind kind;
  CaseFn run;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all{
      {"all_reduce", CollectiveKind::AllReduce, all_reduce},
      {"broadcast", CollectiveKind::Broadcast, broadcast},
      {"all_gather", CollectiveKind::AllGather, all_gather},
      {"all_gather_v", CollectiveKind::AllGather, all_gather_v},
      {"reduce_scatter", CollectiveKind::ReduceScatter, reduce_scatter},
      {"reduce_scatter_v", CollectiveKind::ReduceScatter, reduce_scatter_v},
      {"all_to_all", CollectiveKind::AllToAll, all_to_all},
      {"all_to_all_v", CollectiveKind::AllToAll, all_to_all_v},
  };
  return all;
}

struct Row {
  const char* collective;
  std::string dim;
  uint64_t bytes;  // per call on rank 0, as its communicator counted them
  double time_us;  // best repeat of the slowest rank
  bool ok;         // on every rank, every repeat
};

double max_over(Communicator& world, double value) {
  Tensor t = Tensor::full({1}, value, DType::F64);
  world.all_reduce(t, ReduceOp::Max);
  return t.item<double>();
}

Row run_case(const Case& c, Line& line, int64_t n, int repeats, Communicator& world) {
  const uint64_t bytes_before = line.comm.stats().bytes_of(c.kind);
  double best_us = 1e300;
  bool ok = true;
  for (int r = 0; r < repeats; ++r) {
    Outcome outcome = c.run(line, n);
    best_us = std::min(best_us, outcome.time_us);
    ok = ok && outcome.ok;
  }
  const uint64_t bytes = (line.comm.stats().bytes_of(c.kind) - bytes_before) / uint64_t(repeats);
  const bool ok_everywhere = max_over(world, ok ? 0.0 : 1.0) == 0.0;
  return {c.name, line.dim, bytes, max_over(world, best_us), ok_everywhere};
}

void print_rows(const std::vector<Row>& rows) {
  fmt::print("{:<18} {:<4} {:>10} {:>12} {:>10}  {}\n", "collective", "dim", "elements", "bytes", "time us", "check");
  for (const Row& row : rows) {
    fmt::print("{:<18} {:<4} {:>10} {:>12} {:>10.1f}  {}\n", row.collective, row.dim, row.bytes / sizeof(float),
               row.bytes, row.time_us, row.ok ? "ok" : "FAILED");
  }
}

void print_counters(const std::vector<Line>& lines) {
  fmt::print("\n{:<14} {:<16} {:>6} {:>12}\n", "communicator", "kind", "calls", "bytes");
  for (const Line& line : lines) {
    const CommStats& stats = line.comm.stats();
    std::string label = fmt::format("{} [{}]", line.dim, fmt::join(line.ranks, ","));
    for (size_t k = 0; k < kCollectiveKinds; ++k) {
      auto kind = CollectiveKind(k);
      if (stats.calls_of(kind) == 0) continue;
      fmt::print("{:<14} {:<16} {:>6} {:>12}\n", label, collective_name(kind), stats.calls_of(kind),
                 stats.bytes_of(kind));
    }
  }
}

int run_demo(Communicator& world, int64_t elements, int repeats) {
  DeviceMesh mesh = DeviceMesh::from_world({2, 2}, {"dp", "tp"});
  std::vector<Line> lines{line_of(mesh, "dp"), line_of(mesh, "tp")};

  std::vector<Row> rows;
  for (const Case& c : cases()) {
    for (Line& line : lines) rows.push_back(run_case(c, line, elements, repeats, world));
  }
  const auto failed = std::count_if(rows.begin(), rows.end(), [](const Row& row) { return !row.ok; });

  if (world.rank() == 0) {
    fmt::print("{}: {} f32 elements per block\n", mesh.to_string(), elements);
    fmt::print(
        "elements, bytes: one call's size as its communicator counts it (rank 0); "
        "time: best of {} repeats, slowest rank\n\n",
        repeats);
    print_rows(rows);
    print_counters(lines);
    fmt::print("\ncollectives_demo: checks={} failed={}\n", rows.size(), failed);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& world) {
    CLI::App app{"Runs every collective on a 2x2 (dp, tp) DeviceMesh and checks the results (mpirun -np 4)."};
    int64_t elements = 1 << 16;
    int repeats = 5;
    app.add_option("--elements", elements, "f32 elements per block")->check(CLI::Range(int64_t(1), int64_t(1) << 28));
    app.add_option("--repeats", repeats, "timed repeats per collective (the best is reported)")
        ->check(CLI::Range(1, 1000));
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      // Every rank parses the same arguments; one help or error message is enough.
      return world.rank() == 0 ? app.exit(e) : e.get_exit_code();
    }
    return run_demo(world, elements, repeats);
  });
}
