#include "collectives/runtime.hpp"

#include "collectives/device_staging.hpp"
#include "collectives/mpi/mpi_backend.hpp"

#include <cstdio>
#include <exception>
#include <mutex>

namespace dtensor {

namespace {

struct Runtime {
  std::once_flag started;
  Communicator world;  // released at exit; MPI is finalized when its last group goes
};

Runtime& runtime() {
  static Runtime instance;
  return instance;
}

std::string describe(const std::exception_ptr& error) {
  if (!error) return "terminate called without an active exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception (not derived from std::exception)";
  }
}

// An exception nobody caught (or a noexcept violation) ends the whole job, not just this rank:
// the other ranks may be waiting for it inside a collective.
[[noreturn]] void terminate_job() { abort_job(describe(std::current_exception())); }

}  // namespace

Communicator init(int* argc, char*** argv) {
  Runtime& rt = runtime();
  std::call_once(rt.started, [&] {
    check<CommError>(detail::mpi_is_available(), "init", "MPI was already finalized and cannot start again");
    // CUDA tensors given to the world (or to its splits, the mesh's groups) go through MPI
    // staged in host memory: the multi-rank path on a machine with fewer GPUs than ranks. CPU
    // tensors pass straight through, and the device backend is loaded only when one arrives.
    rt.world = Communicator(detail::stage_device_tensors(detail::create_mpi_world(argc, argv)));
    set_error_rank(rt.world.rank());
    std::set_terminate(terminate_job);
  });
  return rt.world;
}

Communicator world() { return init(); }

void abort_job(const std::string& message, int code) {
  const int rank = error_rank();
  const std::string who = rank < 0 ? "?" : std::to_string(rank);
  std::fflush(stdout);  // whatever this rank printed so far comes before the error
  std::fprintf(stderr, "[rank %s] error: %s\n", who.c_str(), message.c_str());
  std::fflush(stderr);
  detail::mpi_abort_job(code);
}

int run_main(int argc, char** argv, const std::function<int(Communicator&)>& body) {
  try {
    Communicator comm = init(&argc, &argv);
    return body(comm);
  } catch (...) {
    abort_job(describe(std::current_exception()));
  }
}

}  // namespace dtensor
