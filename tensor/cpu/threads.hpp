// How many threads a rank's CPU kernels (oneDNN's GEMMs) use.
//
// DTENSOR_NUM_THREADS when set; otherwise the cores this process may run on divided by the ranks
// of the job on this node (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE, MPICH's MPI_LOCALNRANKS), at
// least 1. So one rank per core is the default and ranks never oversubscribe the node: np 1 on
// a 2-core machine uses both cores, np 2 one each, np 4 one each (oversubscribed by the launch,
// not by the kernels).
#pragma once

namespace dtensor::cpu {

// Resolved once, on first use, and applied to OpenMP. ValueError naming DTENSOR_NUM_THREADS when
// it is set to anything but a positive integer.
int kernel_threads();

}  // namespace dtensor::cpu
