#include "tensor/cpu/threads.hpp"

#include "tensor/error.hpp"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

namespace dtensor::cpu {

namespace {

int positive_env(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  check<ValueError>(*end == '\0' && value > 0 && value <= 4096, "kernel_threads", "{}='{}' must be a positive integer",
                    name, text);
  return int(value);
}

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

int ranks_on_this_node() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}) {
    const char* text = std::getenv(name);
    if (text != nullptr && std::atoi(text) > 0) return std::atoi(text);
  }
  return 1;
}

int resolve_threads() {
  const int requested = positive_env("DTENSOR_NUM_THREADS");
  const int threads = requested > 0 ? requested : std::max(1, usable_cores() / ranks_on_this_node());
  omp_set_num_threads(threads);
  return threads;
}

}  // namespace

int kernel_threads() {
  static const int threads = resolve_threads();
  return threads;
}

}  // namespace dtensor::cpu
