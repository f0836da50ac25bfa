#!/usr/bin/env bash
# Runs libFuzzer targets (build-fuzz/fuzz_*) for a fixed count each, on a scratch copy of their
# committed corpus (fuzz/corpus/<target>; new inputs go to the copy, never to the repository):
#   scripts/fuzz.sh [--runs N] [--max-time S] TARGET...
# Prints one line per target, "fuzz_npy: execs=2000000 seconds=41 result=ok", then
# "fuzz: targets=N execs=... crashes=M". A crash, sanitizer report, leak, timeout or failed
# invariant is a finding: its input is saved under fuzz-artifacts/ of the current directory and
# the script exits non-zero. FUZZ_FLAGS adds libFuzzer flags (e.g. FUZZ_FLAGS=-jobs=4).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=2000000
max_time=0  # seconds per target; 0: no bound
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --max-time) max_time=$2; shift 2 ;;
    *) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "usage: fuzz.sh [--runs N] [--max-time S] TARGET..." >&2; exit 2; }

# The file parsers' targets write each input to a scratch file: on tmpfs they run ~10x faster.
[[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]] && export TMPDIR=/dev/shm
artifacts=$PWD/fuzz-artifacts
mkdir -p "$artifacts"
total_execs=0
crashes=0
for target in "$@"; do
  name=$(basename "$target")
  corpus=$repo/fuzz/corpus/${name#fuzz_}
  dict=$repo/fuzz/dict/json.dict  # every target but npy and gguf reads JSON text
  [[ $name == fuzz_npy ]] && dict=$repo/fuzz/dict/npy.dict
  [[ $name == fuzz_gguf ]] && dict=$repo/fuzz/dict/gguf.dict
  # The corpus copy, and the scratch files of the target (libFuzzer ends the process without
  # running its exit handlers, so the target cannot remove them itself).
  work=$(mktemp -d)
  mkdir "$work/corpus" "$work/scratch"
  cp -r "$corpus/." "$work/corpus/"
  log=$work/log
  start=$SECONDS
  # -timeout: seconds one input may take; -max_total_time bounds CI's pass should a run slow down.
  TMPDIR=$work/scratch "$target" -runs="$runs" -max_total_time="$max_time" -timeout=10 -dict="$dict" \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" ${FUZZ_FLAGS:-} "$work/corpus" >"$log" 2>&1
  status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{ s += $1 } END { print s + 0 }')
  result=ok
  if [[ $status -ne 0 ]]; then
    result="FAILED (exit $status; input in $artifacts)"
    crashes=$((crashes + 1))
    tail -n 60 "$log"
  fi
  echo "$name: execs=$execs seconds=$((SECONDS - start)) result=$result"
  total_execs=$((total_execs + execs))
  rm -rf "$work"
done
echo "fuzz: targets=$# execs=$total_execs crashes=$crashes"
[[ $crashes -eq 0 ]]
