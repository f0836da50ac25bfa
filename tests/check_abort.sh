#!/usr/bin/env bash
# Runs tests/abort_on_error in each failure mode under 3 ranks and passes iff every run ends
# within 10 s, with a non-zero exit code, printing the failing rank and its message.
# Usage: check_abort.sh MPIRUN_WRAPPER ABORT_ON_ERROR_EXE
set -u
mpirun_wrapper=$1
exe=$2
limit_ms=10000
failures=0

# mode, then the text the output must contain
check_mode() {
  local mode=$1 expected=$2 output start elapsed_ms rc
  start=$(date +%s%N)
  output=$(timeout -k 5 30 "$mpirun_wrapper" -np 3 "$exe" "$mode" 2>&1)  # TERM lets mpirun reap its ranks
  rc=$?
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  echo "--- mode $mode: exit code $rc after ${elapsed_ms} ms"
  echo "$output" | grep -v '^\s*$' | head -20
  local verdict=ok
  if [ "$rc" -eq 0 ]; then verdict="exit code 0"; fi
  if [ "$elapsed_ms" -ge "$limit_ms" ]; then verdict="took ${elapsed_ms} ms (limit ${limit_ms} ms)"; fi
  if ! grep -qF -- "$expected" <<<"$output"; then verdict="output lacks: $expected"; fi
  echo "--- mode $mode: $verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
}

check_mode run_main "[rank 1] error: [broadcast] root is 8, expected a rank in [0, 3)"
check_mode terminate "[rank 1] error: rank 1 gave up before the barrier"
echo "abort checks: $failures failed"
[ "$failures" -eq 0 ]
