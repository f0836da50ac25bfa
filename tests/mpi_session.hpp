// The Catch2 session of a test program launched with mpirun: every rank runs the whole session,
// the failure counts are summed over ranks, and every rank returns the same code. Rank 0 prints
// its report; other ranks print theirs (prefixed with the rank) only when they failed.
//
// Skips (tests/skip.hpp): rank 0 prints one "SKIP:" line per test case that skipped all or part
// of itself, and a run in which every test case skipped returns 77 (meson's SKIP).
#pragma once

namespace dtensor::testing {
// Starts MPI (collectives/runtime.hpp), runs the session and returns the program's exit code.
int run_session_on_every_rank(int argc, char** argv);
}  // namespace dtensor::testing
