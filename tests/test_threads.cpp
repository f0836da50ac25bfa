// Kernel threads per rank (tensor/cpu/threads.hpp), run by meson under three environments:
// DTENSOR_NUM_THREADS=3, unset (the cores divided among the ranks of the node), and malformed.
#include <catch2/catch.hpp>

#include "collectives/runtime.hpp"
#include "tensor/cpu/threads.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

using namespace dtensor;

TEST_CASE("kernel threads follow DTENSOR_NUM_THREADS, else the node's cores over its ranks", "[threads]") {
  const char* requested = std::getenv("DTENSOR_NUM_THREADS");
  if (requested != nullptr && std::string(requested) == "three") {
    CHECK_THROWS_AS(cpu::kernel_threads(), ValueError);
    CHECK_THROWS_WITH(cpu::kernel_threads(), Catch::Contains("DTENSOR_NUM_THREADS='three'"));
    return;
  }
  int expected = 0;
  if (requested != nullptr) {
    expected = std::atoi(requested);
  } else {
    // Launched unbound (scripts/mpirun.sh): every online core, shared by the ranks of this job.
    const int cores = int(sysconf(_SC_NPROCESSORS_ONLN));
    expected = std::max(1, cores / world().size());
  }
  CHECK(cpu::kernel_threads() == expected);
  CHECK(omp_get_max_threads() == expected);
}
