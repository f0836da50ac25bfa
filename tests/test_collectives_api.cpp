// Point-to-point, async completion, split, counters and bad input of Communicator under mpirun
// -np 1..4. Bad input is given identically on every rank, so every rank throws before
// communicating; checks after a collective use CHECK, never REQUIRE (see test_collectives.cpp).
#include "tests/collectives_modes.hpp"
#include "tests/skip.hpp"

#include "collectives/watchdog.hpp"

#include <sys/mman.h>

#include <climits>
#include <cstring>

using namespace dtensor;
using namespace dtensor::testing;
using Catch::Matchers::Contains;

TEST_CASE("send and recv between pairs of ranks, blocking and async, by tag", "[send][recv]") {
  Communicator& c = comm();
  const int peer = c.rank() ^ 1;
  if (c.size() == 1) SKIP_TEST("send and recv need 2 ranks");
  if (peer >= c.size()) return;  // the last rank of an odd count has no partner
  const bool first = c.rank() < peer;
  for (DType dtype : kAllDTypes) {
    for (int64_t n : {int64_t(0), int64_t(3), int64_t(300000)}) {
      Tensor mine = make_tensor(dtype, n, [&](int64_t i) { return tagged(c.rank(), i); });
      Tensor theirs = Tensor::zeros({n}, dtype);
      if (first) {
        c.send(mine, peer, 5);
        c.recv(theirs, peer, 5);
      } else {
        c.recv(theirs, peer, 5);
        c.send(mine, peer, 5);
      }
      INFO(dtype_name(dtype) << " n=" << n);
      CHECK(mismatch(theirs, [&](int64_t i) { return tagged(peer, i); }) == "");
    }
  }
  SECTION("async: messages matched by tag, received in the other order") {
    Tensor a = make_tensor(DType::F32, 100000, [&](int64_t i) { return tagged(c.rank(), i); });
    Tensor b = make_tensor(DType::I8, 7, [&](int64_t i) { return tagged(c.rank() + 1, i); });
    Tensor got_a = Tensor::zeros({100000}, DType::F32);
    Tensor got_b = Tensor::zeros({7}, DType::I8);
    Work sa = c.send(a, peer, 1, CommMode::Async);
    Work sb = c.send(b, peer, 2, CommMode::Async);
    Work rb = c.recv(got_b, peer, 2, CommMode::Async);
    Work ra = c.recv(got_a, peer, 1, CommMode::Async);
    finish(rb, Mode::Poll);
    finish(ra, Mode::Wait);
    finish(sa, Mode::Wait);
    finish(sb, Mode::Wait);
    CHECK(mismatch(got_a, [&](int64_t i) { return tagged(peer, i); }) == "");
    CHECK(mismatch(got_b, [&](int64_t i) { return tagged(peer + 1, i); }) == "");
  }
  SECTION("a message shorter than the receive buffer is a CommError on the receiver") {
    if (first) {
      c.send(Tensor::zeros({5}, DType::F32), peer, 9);
    } else {
      Tensor buffer = Tensor::zeros({8}, DType::F32);
      CHECK_THROWS_AS(c.recv(buffer, peer, 9), CommError);
    }
  }
}

TEST_CASE("async operations in flight together complete in any order", "[async]") {
  Communicator& c = comm();
  const int64_t big = elements_in(detail::kAllReducePipelineMinBytes, DType::F32, 3);  // pipelined
  Tensor small = make_tensor(DType::F32, 10, [&](int64_t i) { return contribution(ReduceOp::Sum, c.rank(), i); });
  Tensor large = make_tensor(DType::F32, big, [&](int64_t i) { return contribution(ReduceOp::Sum, c.rank(), i); });
  Tensor half = make_tensor(DType::BF16, 5000, [&](int64_t i) { return contribution(ReduceOp::Max, c.rank(), i); });
  Tensor in = make_tensor(DType::I32, 3, [&](int64_t i) { return tagged(c.rank(), i); });
  Tensor gathered = Tensor::empty({3 * c.size()}, DType::I32);
  const CommMode async = CommMode::Async;
  std::vector<Work> works{c.all_reduce(small, ReduceOp::Sum, async), c.all_reduce(large, ReduceOp::Sum, async),
                          c.all_reduce(half, ReduceOp::Max, async), c.all_gather(in, gathered, async)};
  Tensor blocking = make_tensor(DType::F64, 7, [&](int64_t i) { return contribution(ReduceOp::Sum, c.rank(), i); });
  c.all_reduce(blocking);  // a blocking collective while the others are pending
  for (auto it = works.rbegin(); it != works.rend(); ++it) it->wait();
  auto sum = [&](int64_t i) { return expected_reduction(DType::F32, ReduceOp::Sum, c.size(), i); };
  CHECK(mismatch(small, sum) == "");
  CHECK(mismatch(large, sum) == "");
  CHECK(mismatch(blocking, sum) == "");
  CHECK(mismatch(half, [&](int64_t i) { return expected_reduction(DType::BF16, ReduceOp::Max, c.size(), i); }) == "");
  CHECK(mismatch(gathered, [](int64_t i) { return tagged(int(i / 3), i % 3); }) == "");
}

TEST_CASE("an async Work keeps its tensors' storage alive until it completes", "[async]") {
  Communicator& c = comm();
  if (c.size() == 1) SKIP_TEST("a group of one completes at once and keeps nothing");
  // f32: one MPI request; bf16: the pipeline.
  for (DType dtype : {DType::F32, DType::BF16}) {
    const int64_t n = multi_step_elements(dtype, c.size());
    bool freed = false;
    Work work;
    {
      auto* data = new std::byte[size_t(n) * dtype_size(dtype)]();
      Tensor t = Tensor::from_blob(data, {n}, dtype, [&freed](void* p) {
        delete[] static_cast<std::byte*>(p);
        freed = true;
      });
      work = c.all_reduce(t, ReduceOp::Sum, CommMode::Async);
    }
    CHECK_FALSE(freed);
    work.wait();
    work = Work();
    CHECK(freed);
  }
}

TEST_CASE("split: groups by color ordered by key; a negative color joins none", "[split]") {
  Communicator& c = comm();
  Communicator parity = c.split(c.rank() % 2, -c.rank());  // reversed order within each parity
  std::vector<int> members;
  for (int r = c.size() - 1; r >= 0; --r) {
    if (r % 2 == c.rank() % 2) members.push_back(r);
  }
  REQUIRE(parity.is_member());
  CHECK(parity.size() == int(members.size()));
  CHECK(members[size_t(parity.rank())] == c.rank());
  Tensor t = Tensor::full({1}, c.rank(), DType::I64);
  parity.all_reduce(t);
  int64_t expected = 0;
  for (int r : members) expected += r;
  CHECK(t.item<int64_t>() == expected);

  Communicator without_zero = c.split(c.rank() == 0 ? -1 : 7, 0);
  CHECK(without_zero.is_member() == (c.rank() != 0));
  if (without_zero.is_member()) {
    CHECK(without_zero.size() == c.size() - 1);
    CHECK(without_zero.rank() == c.rank() - 1);
    without_zero.barrier();
  } else {
    CHECK_THROWS_AS(without_zero.all_reduce(t), CommError);
    CHECK_THROWS_WITH(without_zero.rank(), Contains("not a member"));
  }
  Communicator single = c.split(c.rank(), 0);
  CHECK(single.size() == 1);
  single.all_reduce(t);
  CHECK(single.split(-1, 0).is_member() == false);
}

TEST_CASE("counters: calls and bytes per kind, reset, bad calls not counted", "[stats]") {
  Communicator& c = comm();
  Communicator s = c.split(0, c.rank());  // a fresh group with its own counters
  const int n = s.size();
  CHECK(s.stats().total_calls() == 0);
  s.all_reduce(Tensor::zeros({10}, DType::F32));
  s.all_reduce(Tensor::zeros({5}, DType::F64), ReduceOp::Max, CommMode::Async).wait();
  s.broadcast(Tensor::zeros({3}, DType::F64), 0);
  s.all_gather(Tensor::zeros({2}, DType::F32), Tensor::empty({2 * n}, DType::F32));
  s.reduce_scatter(Tensor::zeros({3 * n}, DType::I32), Tensor::empty({3}, DType::I32));
  s.all_to_all(Tensor::zeros({2 * n}, DType::I64), Tensor::empty({2 * n}, DType::I64));
  s.scatter(Tensor::zeros({4 * n}, DType::U8), Tensor::empty({4}, DType::U8), 0);
  s.gather(Tensor::zeros({2}, DType::I8), s.rank() == 0 ? Tensor::empty({2 * n}, DType::I8) : Tensor(), 0);
  s.barrier();
  CHECK_THROWS_AS(s.all_reduce(Tensor::zeros({2, 3}, DType::F32).transpose(0, 1)), ValueError);

  const CommStats& st = s.stats();
  CHECK(st.calls_of(CollectiveKind::AllReduce) == 2);
  CHECK(st.bytes_of(CollectiveKind::AllReduce) == 10 * 4 + 5 * 8);
  CHECK(st.bytes_of(CollectiveKind::Broadcast) == 24);
  CHECK(st.bytes_of(CollectiveKind::AllGather) == uint64_t(8 * n));
  CHECK(st.bytes_of(CollectiveKind::ReduceScatter) == uint64_t(12 * n));
  CHECK(st.bytes_of(CollectiveKind::AllToAll) == uint64_t(16 * n));
  CHECK(st.bytes_of(CollectiveKind::Scatter) == uint64_t(4 * n));
  CHECK(st.bytes_of(CollectiveKind::Gather) == uint64_t(2 * n));
  CHECK(st.calls_of(CollectiveKind::Barrier) == 1);
  CHECK(st.bytes_of(CollectiveKind::Barrier) == 0);
  CHECK(st.total_calls() == 9);
  CHECK(st.total_bytes() == uint64_t(80 + 24 + 8 * n + 12 * n + 16 * n + 4 * n + 2 * n));
  CHECK(collective_name(CollectiveKind::ReduceScatter) == "reduce_scatter");

  Communicator copy = s;  // copies share the counters
  copy.reset_stats();
  CHECK(s.stats().total_calls() == 0);
  CHECK(s.stats().total_bytes() == 0);
  if (n > 1) {
    const int peer = (s.rank() + 1) % n;
    Work sent = s.send(Tensor::zeros({6}, DType::F32), peer, 0, CommMode::Async);
    s.recv(Tensor::empty({6}, DType::F32), (s.rank() + n - 1) % n);
    sent.wait();
    CHECK(s.stats().bytes_of(CollectiveKind::Send) == 24);
    CHECK(s.stats().calls_of(CollectiveKind::Recv) == 1);
  }
}

TEST_CASE("bad input gets typed errors naming the argument, on every rank", "[errors]") {
  Communicator& c = comm();
  const int n = c.size();
  const Tensor f = Tensor::zeros({4}, DType::F32);
  const Tensor out = Tensor::empty({4 * n}, DType::F32);
  const std::string rank_suffix = fmt::format("[rank {}]", c.rank());

  CHECK_THROWS_WITH(c.all_reduce(Tensor::zeros({2, 3}, DType::F32).transpose(0, 1)),
                    Contains("[all_reduce] buffer must be contiguous") && Contains(rank_suffix));
  CHECK_THROWS_AS(c.all_reduce(Tensor()), ValueError);
  CHECK_THROWS_AS(c.all_reduce(Tensor::zeros({3}, DType::I32), ReduceOp::Avg), DTypeError);
  CHECK_THROWS_AS(c.reduce_scatter(Tensor::zeros({n}, DType::U8), Tensor::empty({1}, DType::U8), ReduceOp::Avg),
                  DTypeError);
  CHECK_THROWS_AS(c.all_gather(f, Tensor::empty({4 * n + 1}, DType::F32)), ShapeError);
  CHECK_THROWS_WITH(c.all_gather(f, Tensor::empty({4 * n + 1}, DType::F32)),
                    Contains("[all_gather] out has") && Contains(fmt::format("expected {}", 4 * n)));
  CHECK_THROWS_AS(c.all_gather(f, Tensor::empty({4 * n}, DType::F64)), DTypeError);
  CHECK_THROWS_AS(c.all_gather(f.to(DType::BF16), out), DTypeError);
  CHECK_THROWS_AS(c.reduce_scatter(out, Tensor::empty({5}, DType::F32)), ShapeError);

  std::vector<int64_t> too_few(size_t(n - 1), 4);
  CHECK_THROWS_WITH(c.all_gather_v(f, out, too_few), Contains("counts has") && Contains("one per rank"));
  std::vector<int64_t> negative(size_t(n), 4);
  negative[0] = -4;
  CHECK_THROWS_AS(c.reduce_scatter_v(out, f, negative), ValueError);
  std::vector<int64_t> wrong_total(size_t(n), 4);
  wrong_total.back() = 5;
  CHECK_THROWS_AS(c.all_to_all_v(out, wrong_total, out, std::vector<int64_t>(size_t(n), 4)), ShapeError);
  CHECK_THROWS_AS(c.scatter_v(out, too_few, f, 0), ValueError);

  CHECK_THROWS_WITH(c.broadcast(f, n), Contains("[broadcast] root is") && Contains("[0,"));
  CHECK_THROWS_AS(c.broadcast(f, -1), ValueError);
  CHECK_THROWS_AS(c.scatter(out, f, n), ValueError);
  CHECK_THROWS_AS(c.gather(f, out, -2), ValueError);
  CHECK_THROWS_AS(c.send(f, n), ValueError);
  CHECK_THROWS_AS(c.send(f, c.rank()), ValueError);
  CHECK_THROWS_AS(c.recv(f, (c.rank() + 1) % n, -1), ValueError);

  CHECK_THROWS_AS(c.all_to_all(out, out), ValueError);         // in and out overlap
  const Tensor wide = Tensor::empty({4 * n + 1}, DType::F32);  // in at offset 1 is nobody's block
  CHECK_THROWS_AS(c.all_gather(wide.narrow(0, 1, 4), wide.narrow(0, 0, 4 * n)), ValueError);
  if (n > 1)
    CHECK_THROWS_AS(c.all_to_all(Tensor::zeros({n + 1}, DType::F32), Tensor::empty({n + 1}, DType::F32)), ShapeError);

  Communicator none;
  CHECK_FALSE(none.is_member());
  CHECK_THROWS_WITH(none.all_gather(f, out), Contains("[all_gather] this rank is not a member"));
  CHECK_THROWS_AS(none.barrier(), CommError);
  CHECK_THROWS_AS(none.stats(), CommError);
}

TEST_CASE("counts beyond MPI's int are refused, not truncated", "[errors]") {
  Communicator& c = comm();
  if (c.size() == 1) SKIP_TEST("a group of one copies locally and has no int limit");
  // Tensors over reserved, inaccessible address space: the check must fire before any byte is
  // touched (a touch would crash, not corrupt).
  const int64_t huge = int64_t(INT_MAX) + 10;
  const size_t reserved = size_t(3) << 31;
  void* base = mmap(nullptr, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  REQUIRE(base != MAP_FAILED);
  std::vector<int64_t> counts(size_t(c.size()), 1);
  counts[0] = huge;
  auto* bytes = static_cast<unsigned char*>(base);
  Tensor in = Tensor::from_blob(bytes, {counts[size_t(c.rank())]}, DType::U8);
  Tensor out = Tensor::from_blob(bytes + (size_t(1) << 32), {sum_of(counts)}, DType::U8);
  CHECK_THROWS_WITH(c.all_gather_v(in, out, counts), Contains("counts[0] is") && Contains("MPI's int limit"));
  CHECK_THROWS_AS(c.gather_v(in, out, counts, 0), CommError);
  munmap(base, reserved);
}

TEST_CASE("DTENSOR_TIMEOUT: seconds >= 0, a default when unset, anything else refused naming it", "[timeout]") {
  CHECK(detail::parse_timeout(nullptr) == 1800.0);
  CHECK(detail::parse_timeout("") == 1800.0);
  CHECK(detail::parse_timeout("2") == 2.0);
  CHECK(detail::parse_timeout("0.5") == 0.5);
  CHECK(detail::parse_timeout("0") == 0.0);
  for (const char* bad : {"abc", "-1", "5s", "nan", "inf", "1e999", " "}) {
    INFO(bad);
    CHECK_THROWS_AS(detail::parse_timeout(bad), ValueError);
    CHECK_THROWS_WITH(detail::parse_timeout(bad), Contains("DTENSOR_TIMEOUT is '"));
  }
}
