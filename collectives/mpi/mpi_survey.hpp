// The watchdogs' survey over MPI (collectives/watchdog.hpp): a duplicate of MPI_COMM_WORLD on
// which a timed-out rank's watchdog thread asks the others what they are doing, and their
// watchdog threads answer. Needs MPI_THREAD_MULTIPLE (the watchdog thread calls MPI while the
// program's thread waits inside MPI).
#pragma once

#include "collectives/watchdog.hpp"

#include <memory>

namespace dtensor::detail {

// Collective over MPI_COMM_WORLD. Registers the survey with the watchdog for the lifetime of
// the returned handle, which unregisters it and frees its communicator; nullptr when timeouts
// are off or MPI runs without MPI_THREAD_MULTIPLE (timeout messages then say the other ranks
// could not be asked).
std::shared_ptr<void> start_mpi_survey();

}  // namespace dtensor::detail
