#!/usr/bin/env bash
# A rank killed with SIGKILL in the middle of generate (after its 5th streamed token, of 30000:
# enough that a loaded host cannot finish before the kill lands) and
# in the middle of training (after rank 0 printed step 1, of 2000 steps): the job must end within 10 s of
# the kill, non-zero, with a message naming the lost rank. Open MPI's launcher notices the death
# and ends the others, which are waiting for the dead rank inside a collective.
# Usage: check_faults.sh MPIRUN_WRAPPER MAKE_CHECKPOINT_EXE GENERATE_EXE TRAIN_EXE
set -u
mpirun_wrapper=$1
make_checkpoint=$2
generate=$3
train=$4
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-faults-XXXXXX")
trap 'rm -rf "$dir"' EXIT
limit_ms=10000
failures=0
source "$(dirname "$0")/npy_tokens.sh"

# The pid of world rank $1 of a job running program $2 (its environment names the rank).
rank_pid() {
  local pid
  for pid in $(pgrep -f -- "$2"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# name, np, rank to kill, the output line count to wait for, its pattern, then the command.
kill_case() {
  local name=$1 np=$2 victim=$3 lines=$4 pattern=$5 out="$dir/out.txt" job waited=0 pid start elapsed_ms rc
  shift 5
  "$mpirun_wrapper" -np "$np" "$@" >"$out" 2>&1 &
  job=$!
  until [ "$(grep -c -- "$pattern" "$out")" -ge "$lines" ]; do
    sleep 0.05
    waited=$((waited + 1))
    if [ "$waited" -ge 1200 ] || ! kill -0 "$job" 2>/dev/null; then break; fi
  done
  local verdict=ok
  if pid=$(rank_pid "$victim" "$1") && kill -0 "$job" 2>/dev/null; then
    start=$(date +%s%N)
    kill -9 "$pid"
    timeout -k 5 60 tail --pid="$job" -f /dev/null
    wait "$job"
    rc=$?
    elapsed_ms=$((($(date +%s%N) - start) / 1000000))
    echo "--- $name (np $np): killed rank $victim (pid $pid); the job ended after ${elapsed_ms} ms, exit code $rc"
    if [ "$rc" -eq 0 ]; then verdict="exit code 0"; fi
    if [ "$elapsed_ms" -ge "$limit_ms" ]; then verdict="took ${elapsed_ms} ms (limit ${limit_ms} ms)"; fi
    if ! grep -qE "process rank $victim with PID [0-9]+ .*exited on signal 9" "$out"; then
      verdict="output does not name rank $victim as lost"
    fi
  else
    verdict="the job never reached the kill point (or rank $victim was not found)"
    kill -9 "$job" 2>/dev/null
    wait "$job"
  fi
  grep -v '^\s*$' "$out" | tail -8
  echo "--- $name (np $np): $verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
}

"$make_checkpoint" --out "$dir/llama" --arch llama --hidden 48 --intermediate 80 --layers 2 --heads 6 \
  --kv-heads 2 --vocab 301 --seed 5 --max-position-embeddings 32768 >/dev/null || exit 1
tokens "$dir/tokens.npy" 7 9 301

kill_case "generate" 3 1 5 "^stream: " "$generate" --model "$dir/llama" --prompt-ids "1 2 3" \
  --max-new-tokens 30000 --stream
kill_case "train" 2 1 2 '^{"step": ' "$train" --model "$dir/llama" --tokens "$dir/tokens.npy" --steps 2000 --batch 3 --lr 1e-3
echo "fault checks: $failures failed"
[ "$failures" -eq 0 ]
