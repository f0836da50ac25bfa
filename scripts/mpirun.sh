#!/usr/bin/env bash
# mpirun with the settings every dtensor launch needs on one machine: allowed as root (CI runs
# as root), oversubscribed (4 ranks on 2 cores) and unbound (binding oversubscribed ranks to
# cores serialises them). Usage: scripts/mpirun.sh -np N [mpirun args] program [args]
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun --oversubscribe --bind-to none "$@"
