#!/usr/bin/env bash
# Runs tests/abort_on_error in each failure mode under 3 ranks and passes iff every run ends
# within 10 s, with a non-zero exit code, printing the failing rank and its message.
# Usage: check_abort.sh MPIRUN_WRAPPER ABORT_ON_ERROR_EXE
set -u
mpirun_wrapper=$1
exe=$2
failures=0
source "$(dirname "$0")/job_checks.sh"

expect_job_end "mode run_main" "[rank 1] error: [broadcast] root is 8, expected a rank in [0, 3)" -- \
  "$mpirun_wrapper" -np 3 "$exe" run_main
expect_job_end "mode terminate" "[rank 1] error: rank 1 gave up before the barrier" -- \
  "$mpirun_wrapper" -np 3 "$exe" terminate
echo "abort checks: $failures failed"
[ "$failures" -eq 0 ]
