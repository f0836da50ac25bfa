// The Catch2 session of a test program launched with mpirun (see mpi_session.hpp), and the skip
// records of tests/skip.hpp. The one translation unit that holds Catch2's implementation.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/mpi_session.hpp"

#include "collectives/runtime.hpp"
#include "tests/skip.hpp"

#include <iostream>
#include <map>
#include <set>
#include <sstream>

namespace {

struct SkipLog {
  std::map<std::string, std::set<std::string>> reasons;  // test case -> why it skipped
  std::set<std::string> whole;                           // test cases that checked nothing
  int test_cases = 0;
};

SkipLog& skip_log() {
  static SkipLog log;
  return log;
}

// Counts the test cases that ran, and those that skipped before any assertion.
struct SkipListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    SkipLog& log = skip_log();
    ++log.test_cases;
    const std::string& name = stats.testInfo.name;
    if (log.reasons.count(name) && stats.totals.assertions.total() == 0) log.whole.insert(name);
  }
};

void print_skips(std::ostream& out) {
  const SkipLog& log = skip_log();
  for (const auto& [name, reasons] : log.reasons) {
    out << "SKIP: " << name << (log.whole.count(name) ? "" : " (in part)") << ":";
    for (const std::string& reason : reasons) out << " " << reason << ";";
    out << "\n";
  }
}

}  // namespace

CATCH_REGISTER_LISTENER(SkipListener)

namespace dtensor::testing {

void record_skip(const std::string& reason) {
  skip_log().reasons[Catch::getResultCapture().getCurrentTestName()].insert(reason);
}

int run_session_on_every_rank(int argc, char** argv) {
  dtensor::Communicator world = dtensor::init(&argc, &argv);
  const int rank = world.rank();

  std::ostringstream captured;
  std::streambuf* original = nullptr;
  if (rank != 0) original = std::cout.rdbuf(captured.rdbuf());

  Catch::Session session;
  int failed = session.run(argc, argv);

  if (rank != 0) {
    std::cout.rdbuf(original);
    if (failed > 0) std::cerr << "[rank " << rank << "] " << failed << " failed:\n" << captured.str();
  }

  auto total = dtensor::Tensor::from_vector<int64_t>({failed}, {1});
  world.all_reduce(total, dtensor::ReduceOp::Sum);
  int64_t failed_everywhere = total.item<int64_t>();
  if (rank == 0 && failed_everywhere != failed) {
    std::cout << "failures on other ranks: " << failed_everywhere - failed << "\n";
  }
  if (failed_everywhere != 0) return 1;
  if (rank == 0) print_skips(std::cout);
  // Skips depend on the world size only, so every rank reaches the same answer.
  const SkipLog& log = skip_log();
  const bool all_skipped = log.test_cases > 0 && int(log.whole.size()) == log.test_cases;
  return all_skipped ? 77 : 0;
}

}  // namespace dtensor::testing
