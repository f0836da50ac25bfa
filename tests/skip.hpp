// Skipping a test case, or one SECTION of it, that cannot run at this world size:
//
//   if (world_size() != 4) SKIP_TEST(shape_str(shape) << " needs 4 ranks");
//
// Catch2 v2 has no skip of its own, so the reason is recorded and the test case returns.
// tests/mpi_session.cpp prints a "SKIP:" line per skipped test case, and when every test case of
// the run was skipped the program exits 77, which meson reports as SKIP instead of a pass.
#pragma once

#include <sstream>
#include <string>

namespace dtensor::testing {
// Records why the running test case stops here (tests/mpi_session.cpp).
void record_skip(const std::string& reason);
}  // namespace dtensor::testing

#define SKIP_TEST(reason)                                \
  do {                                                   \
    std::ostringstream skip_reason_;                     \
    skip_reason_ << reason;                              \
    ::dtensor::testing::record_skip(skip_reason_.str()); \
    return;                                              \
  } while (false)
