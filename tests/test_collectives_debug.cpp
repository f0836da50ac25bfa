// DTENSOR_DEBUG=collectives (collectives/call_check.hpp): ranks that call mismatched collectives
// (operation, count, dtype, root, order) all raise the same CommError naming every side's call
// and call site, and the group stays usable; matching calls run as before. The suite runs with
// the variable set (tests/meson.build) at 2 and 3 ranks.
#include <catch2/catch.hpp>

#include "collectives/call_check.hpp"
#include "collectives/runtime.hpp"
#include "skip.hpp"

#include <fmt/format.h>

#include <string>

using namespace dtensor;

namespace {

std::string site(int line) { return fmt::format("test_collectives_debug.cpp:{}", line); }

// Runs `mismatched`, which must throw CommError on this rank; returns its message.
template <typename Fn>
std::string mismatch_message(Fn mismatched) {
  try {
    mismatched();
  } catch (const CommError& e) {
    return e.what();
  }
  FAIL("no CommError: the mismatched collectives ran");
  return {};
}

// The group still works after a refused call: a matching all_reduce gives the rank sum.
void check_group_still_works(Communicator& comm) {
  Tensor one = Tensor::full({3}, 1.0, DType::F32);
  comm.all_reduce(one);
  CHECK(one.to_vector<float>() == std::vector<float>(3, float(comm.size())));
}

}  // namespace

TEST_CASE("the collective checks are on in this suite") { REQUIRE(detail::collective_checks_enabled()); }

TEST_CASE("ranks calling different operations all get the same error naming both call sites") {
  Communicator comm = world();
  if (comm.size() < 2) SKIP_TEST("needs 2 ranks");
  Tensor buffer = Tensor::zeros({4}, DType::F32);
  Tensor gathered = Tensor::zeros({4 * int64_t(comm.size())}, DType::F32);
  const int reduce_line = __LINE__ + 4;  // the lines of the two calls below
  const int gather_line = __LINE__ + 5;
  const std::string message = mismatch_message([&] {
    if (comm.rank() == 0)
      comm.all_reduce(buffer);
    else
      comm.all_gather(buffer, gathered);
  });
  CHECK(message.find("called different collectives") != std::string::npos);
  CHECK(message.find("rank 0 called all_reduce(f32, 4 elements, sum) at ") != std::string::npos);
  CHECK(message.find("all_gather(f32, ") != std::string::npos);
  CHECK(message.find(site(reduce_line)) != std::string::npos);
  CHECK(message.find(site(gather_line)) != std::string::npos);
  check_group_still_works(comm);
}

TEST_CASE("an all_reduce of 64 against 80 elements, or of f32 against f64, is refused by name") {
  Communicator comm = world();
  if (comm.size() < 2) SKIP_TEST("needs 2 ranks");
  Tensor sized = Tensor::zeros({comm.rank() == 0 ? 64 : 80}, DType::F32);
  std::string message = mismatch_message([&] { comm.all_reduce(sized); });
  CHECK(message.find("all_reduce(f32, 64 elements, sum)") != std::string::npos);
  CHECK(message.find("all_reduce(f32, 80 elements, sum)") != std::string::npos);

  Tensor typed = Tensor::zeros({8}, comm.rank() == 0 ? DType::F32 : DType::F64);
  message = mismatch_message([&] { comm.all_reduce(typed); });
  CHECK(message.find("all_reduce(f32, 8 elements, sum)") != std::string::npos);
  CHECK(message.find("all_reduce(f64, 8 elements, sum)") != std::string::npos);
  check_group_still_works(comm);
}

TEST_CASE("a broadcast with different roots is refused instead of moving nothing") {
  Communicator comm = world();
  if (comm.size() < 2) SKIP_TEST("needs 2 ranks");
  Tensor buffer = Tensor::full({5}, double(comm.rank()), DType::F32);
  const std::string message = mismatch_message([&] { comm.broadcast(buffer, comm.rank() == 0 ? 0 : 1); });
  CHECK(message.find("broadcast(f32, 5 elements, root 0)") != std::string::npos);
  CHECK(message.find("broadcast(f32, 5 elements, root 1)") != std::string::npos);
  CHECK(buffer.to_vector<float>() == std::vector<float>(5, float(comm.rank())));  // untouched
  check_group_still_works(comm);
}

TEST_CASE("collectives called in a different order are refused at the first one") {
  Communicator comm = world();
  if (comm.size() < 2) SKIP_TEST("needs 2 ranks");
  Tensor buffer = Tensor::zeros({2}, DType::F32);
  const std::string message = mismatch_message([&] {
    if (comm.rank() == 0) {
      comm.all_reduce(buffer);
      comm.broadcast(buffer, 0);
    } else {
      comm.broadcast(buffer, 0);
      comm.all_reduce(buffer);
    }
  });
  CHECK(message.find("all_reduce(f32, 2 elements, sum)") != std::string::npos);
  CHECK(message.find("broadcast(f32, 2 elements, root 0)") != std::string::npos);
  check_group_still_works(comm);
}

TEST_CASE("matching collectives, uneven counts and splits pass the check") {
  Communicator comm = world();
  const int rank = comm.rank(), size = comm.size();
  std::vector<int64_t> counts;
  for (int r = 0; r < size; ++r) counts.push_back(r + 1);
  Tensor mine = Tensor::full({rank + 1}, double(rank), DType::F32);
  Tensor all = Tensor::zeros({size * (size + 1) / 2}, DType::F32);
  comm.all_gather_v(mine, all, counts);
  std::vector<float> want;
  for (int r = 0; r < size; ++r) want.insert(want.end(), size_t(r + 1), float(r));
  CHECK(all.to_vector<float>() == want);
  // all_to_all_v: each rank's counts are its own, only the operation and dtype are compared.
  std::vector<int64_t> sends(size_t(size), rank + 1), receives;
  for (int r = 0; r < size; ++r) receives.push_back(r + 1);
  Tensor out = Tensor::zeros({size * (size + 1) / 2}, DType::F32);
  comm.all_to_all_v(Tensor::full({(rank + 1) * size}, double(rank), DType::F32), sends, out, receives);
  CHECK(out.to_vector<float>() == want);
  Communicator half = comm.split(rank % 2, rank);
  check_group_still_works(half);
  comm.barrier();
}
