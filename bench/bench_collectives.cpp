// `make bench-collectives`: dtensor's collectives against the raw Open MPI call, side by side.
//
//   scripts/mpirun.sh -np 2 build/bench/bench_collectives [--min-bytes N] [--max-bytes N]
//                                                          [--iters N] [--warmup N]
//
// For each collective and each size (powers of 4 from --min-bytes to --max-bytes) the two are
// timed alternately, iteration by iteration, so background load hits both alike. A time is the
// slowest rank's; the table shows the median. Columns follow nccl-tests: size is the buffer for
// all_reduce and broadcast, the full output for all_gather, the full input for reduce_scatter and
// all_to_all; algbw = size / time; busbw = algbw * factor with factor 2(n-1)/n for all_reduce,
// (n-1)/n for all_gather, reduce_scatter and all_to_all, 1 for broadcast. #wrong counts elements
// where our result differs from the raw call's on the same input (small integers, exact sums).
// The raw calls use the same semantics as ours: all_reduce in place, the others out of place.
// The last line is the busbw ratio (ours / raw) of each collective at the largest size.
#include "collectives/runtime.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#define OMPI_SKIP_MPICXX 1  // the raw calls use MPI's C API only
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <sstream>

using namespace dtensor;

namespace {

struct Options {
  int64_t min_bytes = int64_t(64) << 10;
  int64_t max_bytes = int64_t(64) << 20;
  int iters = 20;
  int warmup = 3;
};

void mpi(int rc, const char* call) { check<CommError>(rc == MPI_SUCCESS, call, "returned MPI error {}", rc); }

// The buffers of one collective at one size. Ours and the raw call run on the same buffers:
// where a buffer lies in memory alone moved a 64 MiB broadcast by 30% on this machine.
struct Buffers {
  Tensor in, out;
};

struct Collective {
  const char* name;
  double (*bus_factor)(int n);
  int64_t (*in_count)(int64_t count, int n);   // elements of in, given the nccl-tests count
  int64_t (*out_count)(int64_t count, int n);  // elements of out (0: in place)
  void (*ours)(Communicator& comm, Buffers& b);
  void (*raw)(Buffers& b, int n);
};

double all_reduce_factor(int n) { return 2.0 * (n - 1) / n; }
double spread_factor(int n) { return double(n - 1) / n; }
double one_factor(int) { return 1.0; }
int64_t same(int64_t count, int) { return count; }
int64_t share(int64_t count, int n) { return count / n; }
int64_t none(int64_t, int) { return 0; }

float* f32(const Tensor& t) { return t.data<float>(); }
int block(const Buffers& b, int n) { return int(b.in.numel() / n); }

const Collective kCollectives[] = {
    {"all_reduce", all_reduce_factor, same, none, [](Communicator& c, Buffers& b) { c.all_reduce(b.in); },
     [](Buffers& b, int) {
       mpi(MPI_Allreduce(MPI_IN_PLACE, f32(b.in), int(b.in.numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
           "MPI_Allreduce");
     }},
    {"reduce_scatter", spread_factor, same, share, [](Communicator& c, Buffers& b) { c.reduce_scatter(b.in, b.out); },
     [](Buffers& b, int) {
       mpi(MPI_Reduce_scatter_block(f32(b.in), f32(b.out), int(b.out.numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
           "MPI_Reduce_scatter_block");
     }},
    {"all_gather", spread_factor, share, same, [](Communicator& c, Buffers& b) { c.all_gather(b.in, b.out); },
     [](Buffers& b, int) {
       const int n = int(b.in.numel());
       mpi(MPI_Allgather(f32(b.in), n, MPI_FLOAT, f32(b.out), n, MPI_FLOAT, MPI_COMM_WORLD), "MPI_Allgather");
     }},
    {"all_to_all", spread_factor, same, same, [](Communicator& c, Buffers& b) { c.all_to_all(b.in, b.out); },
     [](Buffers& b, int n) {
       mpi(MPI_Alltoall(f32(b.in), block(b, n), MPI_FLOAT, f32(b.out), block(b, n), MPI_FLOAT, MPI_COMM_WORLD),
           "MPI_Alltoall");
     }},
    {"broadcast", one_factor, same, none, [](Communicator& c, Buffers& b) { c.broadcast(b.in, 0); },
     [](Buffers& b, int) { mpi(MPI_Bcast(f32(b.in), int(b.in.numel()), MPI_FLOAT, 0, MPI_COMM_WORLD), "MPI_Bcast"); }},
};

// Small integers: every sum of a few ranks is exact, so ours and raw must agree bitwise.
void fill(const Tensor& t, int rank) {
  float* p = f32(t);
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(rank + 1 + i % 7);
}

Buffers make_buffers(const Collective& c, int64_t count, int n) {
  return {Tensor::empty({c.in_count(count, n)}, DType::F32), Tensor::empty({c.out_count(count, n)}, DType::F32)};
}

// The result buffer: out, or in for the in-place collectives.
const Tensor& result(const Buffers& b) { return b.out.numel() == 0 ? b.in : b.out; }

int64_t count_wrong(const Collective& c, Buffers& b, Communicator& comm) {
  fill(b.in, comm.rank());
  c.ours(comm, b);
  const Tensor ours = result(b).clone();
  fill(b.in, comm.rank());
  c.raw(b, comm.size());
  const float* expected = f32(result(b));
  const float* got = f32(ours);
  int64_t wrong = 0;
  for (int64_t i = 0; i < ours.numel(); ++i) wrong += got[i] != expected[i];
  return wrong;
}

double seconds_of(const std::function<void()>& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

struct Timing {
  double ours_s, raw_s;
};

// Alternating timed runs; each run's time is the slowest rank's.
Timing time_both(const Collective& c, Buffers& b, Communicator& comm, const Options& options) {
  for (int i = 0; i < options.warmup; ++i) {
    c.ours(comm, b);
    c.raw(b, comm.size());
  }
  Tensor times = Tensor::empty({2, options.iters}, DType::F64);
  double* t = times.data<double>();
  for (int i = 0; i < options.iters; ++i) {  // the order alternates so neither side always goes first
    for (int side : {i % 2, 1 - i % 2}) {
      comm.barrier();
      const double s = seconds_of([&] { side == 0 ? c.ours(comm, b) : c.raw(b, comm.size()); });
      t[side * options.iters + i] = s;
    }
  }
  comm.all_reduce(times, ReduceOp::Max);
  return {median({t, t + options.iters}), median({t + options.iters, t + 2 * options.iters})};
}

struct Row {
  double busbw_ours, busbw_raw;
};

Row bench_size(const Collective& c, int64_t bytes, Communicator& comm, const Options& options) {
  const int n = comm.size();
  const int64_t count = bytes / 4 / n * n;  // whole blocks per rank
  Buffers b = make_buffers(c, count, n);
  const int64_t wrong = count_wrong(c, b, comm);
  const Timing timing = time_both(c, b, comm, options);
  const double size = double(count) * 4;
  const double factor = c.bus_factor(n);
  const Row row{size / timing.ours_s * factor / 1e9, size / timing.raw_s * factor / 1e9};
  if (comm.rank() == 0) {
    fmt::print("{:>12} {:>11} {:>5} {:>10.1f} {:>7.2f} {:>7.2f} {:>6} {:>10.1f} {:>7.2f} {:>7.2f} {:>6.2f}\n",
               int64_t(size), count, "float", timing.ours_s * 1e6, size / timing.ours_s / 1e9, row.busbw_ours, wrong,
               timing.raw_s * 1e6, size / timing.raw_s / 1e9, row.busbw_raw, row.busbw_ours / row.busbw_raw);
  }
  return row;
}

void print_header(const Collective& c, int n) {
  fmt::print("\n# {} on {} ranks\n", c.name, n);
  fmt::print("# {:>10} {:>11} {:>5} {:>10} {:>7} {:>7} {:>6} {:>10} {:>7} {:>7} {:>6}\n", "", "", "", "dtensor", "", "",
             "", "raw MPI", "", "", "");
  fmt::print("# {:>10} {:>11} {:>5} {:>10} {:>7} {:>7} {:>6} {:>10} {:>7} {:>7} {:>6}\n", "size(B)", "count", "type",
             "time(us)", "algbw", "busbw", "#wrong", "time(us)", "algbw", "busbw", "ratio");
}

int run(Communicator& comm, const Options& options) {
  if (comm.rank() == 0) {
    fmt::print(
        "# collectives: dtensor vs raw Open MPI, {} ranks, median of {} alternating iterations after {} "
        "warm-up, slowest rank's time, bandwidth in GB/s\n",
        comm.size(), options.iters, options.warmup);
  }
  std::map<std::string, double> ratios;
  for (const Collective& c : kCollectives) {
    if (comm.rank() == 0) print_header(c, comm.size());
    Row last{};
    for (int64_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= 4) {
      last = bench_size(c, bytes, comm, options);
    }
    ratios[c.name] = last.busbw_ours / last.busbw_raw;
  }
  if (comm.rank() == 0) {
    fmt::print(
        "\ncollectives: all_reduce_ratio={:.2f} reduce_scatter_ratio={:.2f} all_gather_ratio={:.2f} "
        "all_to_all_ratio={:.2f} broadcast_ratio={:.2f}\n",
        ratios["all_reduce"], ratios["reduce_scatter"], ratios["all_gather"], ratios["all_to_all"],
        ratios["broadcast"]);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(argc, argv, [&](Communicator& comm) {
    Options options;
    CLI::App app{"dtensor collectives against the raw MPI calls"};
    app.add_option("--min-bytes", options.min_bytes, "smallest size in bytes")->check(CLI::PositiveNumber);
    app.add_option("--max-bytes", options.max_bytes, "largest size in bytes (sizes step by 4x)")
        ->check(CLI::PositiveNumber);
    app.add_option("--iters", options.iters, "timed iterations per size")->check(CLI::PositiveNumber);
    app.add_option("--warmup", options.warmup, "untimed iterations per size")->check(CLI::NonNegativeNumber);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      std::ostringstream quiet;
      return comm.rank() == 0 ? app.exit(e) : app.exit(e, quiet, quiet);
    }
    return run(comm, options);
  });
}
