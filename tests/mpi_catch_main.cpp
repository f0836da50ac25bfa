// Catch2 main for tests launched with mpirun (tests/mpi_session.hpp).
#include "tests/mpi_session.hpp"

int main(int argc, char** argv) { return dtensor::testing::run_session_on_every_rank(argc, argv); }
