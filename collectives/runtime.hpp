// Process-wide start-up and failure handling for mpirun-launched programs.
#pragma once

#include "collectives/communicator.hpp"

#include <functional>
#include <string>

namespace dtensor {

// Starts MPI once (later calls return the same group) and returns the world communicator.
// Installs a terminate handler so an uncaught exception on any rank ends the whole job.
Communicator init(int* argc = nullptr, char*** argv = nullptr);
// The world communicator; calls init() if needed.
Communicator world();

// Prints "[rank N] error: <message>" to stderr and ends every rank of the job with `code`.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

// Runs body(world) and returns its exit code; an exception escaping body on any rank aborts the
// whole job with that rank's message, so no other rank waits forever in a collective.
int run_main(int argc, char** argv, const std::function<int(Communicator&)>& body);

}  // namespace dtensor
