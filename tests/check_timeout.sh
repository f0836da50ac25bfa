#!/usr/bin/env bash
# Runs tests/hang_on_purpose in each mode with DTENSOR_TIMEOUT=2 and passes iff every run ends
# within 10 s, with a non-zero exit code, and its output holds each expected text: the call that
# timed out, where it was made, the communicator, and what the ranks that did not arrive were doing.
# Usage: check_timeout.sh MPIRUN_WRAPPER HANG_ON_PURPOSE_EXE
set -u
mpirun_wrapper=$1
exe=$2
limit_ms=10000
failures=0

# np, mode, then the texts the output must contain
check_mode() {
  local np=$1 mode=$2 output start elapsed_ms rc
  shift 2
  start=$(date +%s%N)
  # Without DTENSOR_DEBUG: the fingerprints would turn the mismatch of mode "order" into an error.
  output=$(env -u DTENSOR_DEBUG DTENSOR_TIMEOUT=2 timeout -k 5 60 "$mpirun_wrapper" -np "$np" "$exe" "$mode" 2>&1)
  rc=$?
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  echo "--- mode $mode (np $np): exit code $rc after ${elapsed_ms} ms"
  echo "$output" | grep -v '^\s*$' | head -20
  local verdict=ok expected
  if [ "$rc" -eq 0 ]; then verdict="exit code 0"; fi
  if [ "$elapsed_ms" -ge "$limit_ms" ]; then verdict="took ${elapsed_ms} ms (limit ${limit_ms} ms)"; fi
  for expected in "$@"; do
    if ! grep -qF -- "$expected" <<<"$output"; then verdict="output lacks: $expected"; fi
  done
  echo "--- mode $mode: $verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
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
