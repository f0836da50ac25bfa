#!/usr/bin/env bash
# Runs tests/hang_on_purpose in each mode with DTENSOR_TIMEOUT=2 and passes iff every run ends
# within 10 s, with a non-zero exit code, and its output holds each expected text: the call that
# timed out, where it was made, the communicator, and what the ranks that did not arrive were doing.
# Usage: check_timeout.sh MPIRUN_WRAPPER HANG_ON_PURPOSE_EXE
set -u
mpirun_wrapper=$1
exe=$2
failures=0
source "$(dirname "$0")/job_checks.sh"

# np, mode, then the texts the output must contain. Without DTENSOR_DEBUG: the fingerprints would
# turn the mismatch of mode "order" into an error.
check_mode() {
  local np=$1 mode=$2
  shift 2
  expect_job_end "mode $mode (np $np)" "$@" -- \
    env -u DTENSOR_DEBUG DTENSOR_TIMEOUT=2 "$mpirun_wrapper" -np "$np" "$exe" "$mode"
}

check_mode 3 compute "[timeout] all_reduce(f32, 64 elements, sum) at" "hang_on_purpose.cpp:" \
  "more than DTENSOR_TIMEOUT (2 s)" "on a communicator of the world, 3 ranks" \
  "not arrived: rank 1 (in no collective" "arrived besides this rank: "
# Whichever rank times out first names the other's call.
check_mode 2 order "error: [timeout] all_" "(call 1 of the group) on a communicator of the world, 2 ranks waited" \
  "not arrived: rank " "(waiting in all_"
check_mode 2 recv "[rank 0] error: [timeout] recv(f32, 8 elements, peer 1) at" "the peer is rank 1 (in no collective"
check_mode 4 subgroup "[rank 0] error: [timeout] all_reduce(f32, 64 elements, sum) at" \
  "on a communicator of world ranks [0, 2]" "not arrived: rank 1 (world rank 2) (in no collective"
echo "timeout checks: $failures failed"
[ "$failures" -eq 0 ]
