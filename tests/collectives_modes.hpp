// Shared by the collectives test files: the world communicator, the three ways of completing
// an operation (blocking, wait on its Work, poll test()), and a size spanning pipeline steps.
#pragma once

#include "collectives/mpi/mpi_backend.hpp"
#include "collectives/runtime.hpp"
#include "tests/collectives_expect.hpp"

#include <catch2/catch.hpp>

namespace dtensor::testing {

inline Communicator& comm() {
  static Communicator world_comm = world();
  return world_comm;
}

enum class Mode { Blocking, Wait, Poll };
inline constexpr Mode kModes[] = {Mode::Blocking, Mode::Wait, Mode::Poll};
inline const char* mode_name(Mode m) { return m == Mode::Blocking ? "blocking" : m == Mode::Wait ? "wait" : "poll"; }

// The CommMode a collective is called with to be completed in `mode`.
inline CommMode comm_mode(Mode m) { return m == Mode::Blocking ? CommMode::Blocking : CommMode::Async; }

// `work` came from a collective called with comm_mode(mode).
inline void finish(Work work, Mode mode) {
  if (mode == Mode::Blocking) CHECK(work.test());  // a blocking call returns a complete Work
  if (mode == Mode::Poll) {
    while (!work.test()) {
    }
    CHECK(work.test());
  }
  work.wait();  // completes a Wait-mode operation; a no-op once complete
}

// More than one pipeline chunk per rank: several steps.
inline int64_t multi_step_elements(DType dtype, int size) {
  return elements_in(size_t(detail::kPipelineChunkBytes), dtype) * size + 13;
}

}  // namespace dtensor::testing
