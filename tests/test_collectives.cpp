// Every collective under mpirun -np 1..4 (the same binary): each rank's input is a known formula
// of (rank, index) and the expected output is computed by a loop here. Sizes straddle the
// all_reduce threshold of mpi_backend.hpp so both the MPI-call and the pipelined paths run, and
// reach several pipeline steps and the streaming-store size. Checks after a collective use CHECK,
// never REQUIRE, so a failure on one rank cannot make it skip collectives the other ranks then
// wait in. Point-to-point, async, split, counters and errors: test_collectives_api.cpp.
#include "tests/collectives_modes.hpp"

#include <cstring>

using namespace dtensor;
using namespace dtensor::testing;

namespace {

void check_all_reduce(DType dtype, ReduceOp op, int64_t n, Mode mode) {
  Communicator& c = comm();
  Tensor t = make_tensor(dtype, n, [&](int64_t i) { return contribution(op, c.rank(), i); });
  finish(c.all_reduce(t, op, comm_mode(mode)), mode);
  INFO(dtype_name(dtype) << " " << reduce_op_name(op) << " n=" << n << " " << mode_name(mode));
  CHECK(mismatch(t, [&](int64_t i) { return expected_reduction(dtype, op, c.size(), i); }) == "");
}

void check_reduce_scatter(DType dtype, ReduceOp op, const std::vector<int64_t>& counts, Mode mode, bool in_place) {
  Communicator& c = comm();
  const int64_t offset = offset_of(counts, c.rank());
  Tensor in = make_tensor(dtype, sum_of(counts), [&](int64_t i) { return contribution(op, c.rank(), i); });
  Tensor out =
      in_place ? in.narrow(0, offset, counts[size_t(c.rank())]) : Tensor::empty({counts[size_t(c.rank())]}, dtype);
  finish(c.reduce_scatter_v(in, out, counts, op, comm_mode(mode)), mode);
  INFO(dtype_name(dtype) << " " << reduce_op_name(op) << " rank count " << counts[size_t(c.rank())] << " "
                         << mode_name(mode) << (in_place ? " in place" : ""));
  CHECK(mismatch(out, [&](int64_t i) { return expected_reduction(dtype, op, c.size(), offset + i); }) == "");
}

void check_all_gather(DType dtype, const std::vector<int64_t>& counts, Mode mode, bool in_place) {
  Communicator& c = comm();
  Tensor out = Tensor::zeros({sum_of(counts)}, dtype);
  Tensor in = in_place ? out.narrow(0, offset_of(counts, c.rank()), counts[size_t(c.rank())])
                       : Tensor::empty({counts[size_t(c.rank())]}, dtype);
  in.copy_from(make_tensor(dtype, in.numel(), [&](int64_t i) { return tagged(c.rank(), i); }));
  finish(c.all_gather_v(in, out, counts, comm_mode(mode)), mode);
  std::vector<double> expected;
  for (int r = 0; r < c.size(); ++r) {
    for (int64_t i = 0; i < counts[size_t(r)]; ++i) expected.push_back(tagged(r, i));
  }
  INFO(dtype_name(dtype) << " total " << expected.size() << " " << mode_name(mode) << (in_place ? " in place" : ""));
  CHECK(mismatch(out, [&](int64_t i) { return expected[size_t(i)]; }) == "");
}

}  // namespace

TEST_CASE("all_reduce equals a loop over ranks for every dtype, op and mode", "[all_reduce]") {
  for (DType dtype : kAllDTypes) {
    for (ReduceOp op : kAllOps) {
      if (!valid(dtype, op)) continue;
      for (int64_t n : {0, 1, 37, 1000}) {
        for (Mode mode : kModes) check_all_reduce(dtype, op, n, mode);
      }
    }
  }
}

TEST_CASE("all_reduce on both sides of the pipeline threshold", "[all_reduce]") {
  const size_t threshold = detail::kAllReducePipelineMinBytes;
  for (DType dtype : {DType::F32, DType::F64, DType::I8, DType::I64}) {
    check_all_reduce(dtype, ReduceOp::Sum, elements_in(threshold, dtype, -1), Mode::Blocking);
    check_all_reduce(dtype, ReduceOp::Sum, elements_in(threshold, dtype, 3), Mode::Poll);
  }
  check_all_reduce(DType::F32, ReduceOp::Max, elements_in(threshold, DType::F32, 3), Mode::Blocking);
  check_all_reduce(DType::F64, ReduceOp::Avg, elements_in(threshold, DType::F64, 3), Mode::Wait);
}

TEST_CASE("all_reduce of bf16/f16 (always pipelined) over several steps", "[all_reduce]") {
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (ReduceOp op : kAllOps) {
      check_all_reduce(dtype, op, multi_step_elements(dtype, comm().size()), Mode::Poll);
    }
  }
}

TEST_CASE("all_reduce results are bitwise identical on every rank", "[all_reduce]") {
  Communicator& c = comm();
  for (DType dtype : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    // f32: Open MPI's small and large (segmented ring) algorithms, then our pipeline.
    const int64_t pipelined = elements_in(detail::kAllReducePipelineMinBytes, dtype, 3);
    const std::vector<int64_t> sizes = dtype == DType::F32
                                           ? std::vector<int64_t>{1000, 1 << 20, pipelined}
                                           : std::vector<int64_t>{1000, multi_step_elements(dtype, c.size())};
    for (int64_t n : sizes) {
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Prod}) {
        // Inexact values: only a fixed reduction order makes the ranks agree.
        Tensor t = make_tensor(dtype, n, [&](int64_t i) { return std::sin(1.0 + 0.37 * double(i) + 1.3 * c.rank()); });
        c.all_reduce(t, op);
        Tensor all = Tensor::empty({c.size() * n}, dtype);
        c.all_gather(t, all);
        const size_t bytes = t.nbytes();
        const auto* base = static_cast<const unsigned char*>(all.data_ptr());
        for (int r = 1; r < c.size(); ++r) {
          INFO(dtype_name(dtype) << " " << reduce_op_name(op) << " n=" << n << " rank " << r << " vs rank 0");
          CHECK(std::memcmp(base, base + size_t(r) * bytes, bytes) == 0);
        }
      }
    }
  }
}

TEST_CASE("broadcast from every root, every dtype", "[broadcast]") {
  Communicator& c = comm();
  for (DType dtype : kAllDTypes) {
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(1000), elements_for(int64_t(4) << 20, dtype, 1)}) {
      for (int root = 0; root < c.size(); ++root) {
        for (Mode mode : kModes) {
          Tensor t = c.rank() == root ? make_tensor(dtype, n, [&](int64_t i) { return tagged(root, i); })
                                      : Tensor::zeros({n}, dtype);
          finish(c.broadcast(t, root, comm_mode(mode)), mode);
          INFO(dtype_name(dtype) << " n=" << n << " root " << root << " " << mode_name(mode));
          CHECK(mismatch(t, [&](int64_t i) { return tagged(root, i); }) == "");
        }
      }
    }
  }
}

TEST_CASE("all_gather and all_gather_v, equal, uneven and empty counts", "[all_gather]") {
  Communicator& c = comm();
  for (DType dtype : kAllDTypes) {
    for (int64_t base : {int64_t(0), int64_t(5), elements_for(int64_t(1) << 20, dtype, c.size())}) {
      for (bool uneven : {false, true}) {
        const std::vector<int64_t> counts =
            uneven ? uneven_counts(c.size(), base) : std::vector<int64_t>(size_t(c.size()), base);
        for (Mode mode : kModes) check_all_gather(dtype, counts, mode, false);
        check_all_gather(dtype, counts, Mode::Blocking, true);
      }
    }
  }
  SECTION("all_gather: equal blocks without counts") {
    Tensor in = make_tensor(DType::I32, 3, [&](int64_t i) { return tagged(c.rank(), i); });
    Tensor out = Tensor::empty({3 * c.size()}, DType::I32);
    c.all_gather(in, out);
    CHECK(mismatch(out, [](int64_t i) { return tagged(int(i / 3), i % 3); }) == "");
  }
}

TEST_CASE("reduce_scatter and reduce_scatter_v for every dtype and op", "[reduce_scatter]") {
  Communicator& c = comm();
  for (DType dtype : kAllDTypes) {
    for (ReduceOp op : kAllOps) {
      if (!valid(dtype, op)) continue;
      for (int64_t base : {0, 1, 37, 3000}) {
        check_reduce_scatter(dtype, op, std::vector<int64_t>(size_t(c.size()), base), Mode::Blocking, false);
        check_reduce_scatter(dtype, op, uneven_counts(c.size(), base), Mode::Blocking, false);
        check_reduce_scatter(dtype, op, uneven_counts(c.size(), base), Mode::Poll, false);
      }
    }
  }
  SECTION("several pipeline steps, async, and out aliasing this rank's block of in") {
    for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
      const int64_t n = elements_in(size_t(detail::kPipelineChunkBytes), dtype, 5);
      check_reduce_scatter(dtype, ReduceOp::Sum, uneven_counts(c.size(), n), Mode::Wait, false);
      check_reduce_scatter(dtype, ReduceOp::Max, uneven_counts(c.size(), n), Mode::Blocking, true);
      check_reduce_scatter(dtype, ReduceOp::Sum, uneven_counts(c.size(), 11), Mode::Blocking, true);
    }
  }
  SECTION("output blocks large enough for streaming stores") {
    const int64_t n = elements_in(detail::kStreamMinBytes, DType::F32, 5);
    check_reduce_scatter(DType::F32, ReduceOp::Sum, uneven_counts(c.size(), n), Mode::Blocking, false);
    check_reduce_scatter(DType::F32, ReduceOp::Avg, uneven_counts(c.size(), n), Mode::Blocking, true);
  }
  SECTION("reduce_scatter: equal blocks without counts") {
    Tensor in =
        make_tensor(DType::F32, 4 * c.size(), [&](int64_t i) { return contribution(ReduceOp::Sum, c.rank(), i); });
    Tensor out = Tensor::empty({4}, DType::F32);
    finish(c.reduce_scatter(in, out, ReduceOp::Sum, CommMode::Async), Mode::Wait);
    CHECK(mismatch(out, [&](int64_t i) {
            return expected_reduction(DType::F32, ReduceOp::Sum, c.size(), 4 * c.rank() + i);
          }) == "");
  }
}

TEST_CASE("all_to_all and all_to_all_v, including empty pairs", "[all_to_all]") {
  Communicator& c = comm();
  const int me = c.rank();
  const int last = c.size() - 1;
  for (DType dtype : kAllDTypes) {
    for (int64_t scale : {int64_t(1), int64_t(40000)}) {
      // Some pairs exchange nothing; and a matrix whose row and column look equal on all ranks
      // but the last.
      const std::function<int64_t(int, int)> patterns[] = {
          [&](int src, int dst) { return (src + 2 * dst) % 3 * scale; },
          [&](int src, int dst) { return (src == last && dst == last ? 3 : 2) * scale; }};
      for (const auto& pattern : patterns) {
        for (Mode mode : kModes) {
          const Exchange e = exchange_for(me, c.size(), pattern);
          Tensor in =
              make_tensor(dtype, int64_t(e.in_values.size()), [&](int64_t i) { return e.in_values[size_t(i)]; });
          Tensor out = Tensor::empty({int64_t(e.expected.size())}, dtype);
          finish(c.all_to_all_v(in, e.send, out, e.recv, comm_mode(mode)), mode);
          INFO(dtype_name(dtype) << " scale " << scale << " " << mode_name(mode));
          CHECK(mismatch(out, [&](int64_t i) { return e.expected[size_t(i)]; }) == "");
        }
      }
    }
  }
  SECTION("all_to_all: equal blocks") {
    const int64_t block = 1000;
    Tensor in = make_tensor(DType::F64, block * c.size(),
                            [&](int64_t i) { return pair_tagged(me, int(i / block), i % block); });
    Tensor out = Tensor::empty({block * c.size()}, DType::F64);
    c.all_to_all(in, out);
    CHECK(mismatch(out, [&](int64_t i) { return pair_tagged(int(i / block), me, i % block); }) == "");
    finish(c.all_to_all(in, out, CommMode::Async), Mode::Poll);
    CHECK(mismatch(out, [&](int64_t i) { return pair_tagged(int(i / block), me, i % block); }) == "");
  }
}

TEST_CASE("scatter(_v) and gather(_v) from every root; non-roots pass no root buffer", "[scatter][gather]") {
  Communicator& c = comm();
  for (DType dtype : kAllDTypes) {
    for (int root = 0; root < c.size(); ++root) {
      for (Mode mode : kModes) {
        const std::vector<int64_t> counts = uneven_counts(c.size(), 3);
        std::vector<double> all;
        for (int r = 0; r < c.size(); ++r) {
          for (int64_t i = 0; i < counts[size_t(r)]; ++i) all.push_back(tagged(r, i));
        }
        const bool is_root = c.rank() == root;
        Tensor full =
            is_root ? make_tensor(dtype, int64_t(all.size()), [&](int64_t i) { return all[size_t(i)]; }) : Tensor();
        Tensor part = Tensor::empty({counts[size_t(c.rank())]}, dtype);
        finish(c.scatter_v(full, counts, part, root, comm_mode(mode)), mode);
        INFO(dtype_name(dtype) << " root " << root << " " << mode_name(mode));
        CHECK(mismatch(part, [&](int64_t i) { return tagged(c.rank(), i); }) == "");

        Tensor gathered = is_root ? Tensor::zeros({int64_t(all.size())}, dtype) : Tensor();
        finish(c.gather_v(part, gathered, counts, root, comm_mode(mode)), mode);
        if (is_root) CHECK(mismatch(gathered, [&](int64_t i) { return all[size_t(i)]; }) == "");

        Tensor block = Tensor::empty({4}, dtype);
        Tensor equal_full =
            is_root ? make_tensor(dtype, 4 * c.size(), [](int64_t i) { return tagged(int(i / 4), i % 4); }) : Tensor();
        finish(c.scatter(equal_full, block, root, comm_mode(mode)), mode);
        CHECK(mismatch(block, [&](int64_t i) { return tagged(c.rank(), i); }) == "");
        Tensor equal_out = is_root ? Tensor::zeros({4 * c.size()}, dtype) : Tensor();
        finish(c.gather(block, equal_out, root, comm_mode(mode)), mode);
        if (is_root) CHECK(mismatch(equal_out, [](int64_t i) { return tagged(int(i / 4), i % 4); }) == "");
      }
    }
  }
}
