#!/usr/bin/env bash
# Runs one test command of the sanitizer build (meson's exe_wrapper) with the ASan, LSan and UBSan
# reports of every process it starts (each rank, each program a check script runs) written to a
# fresh folder, then prints them and fails the test if there is any. A report so fails the test
# also where the command was expected to fail and a script judged only its exit code and output.
# Usage: run.sh COMMAND [ARGS...]
set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-sanitizers-XXXXXX")
trap 'rm -rf "$dir"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:log_path=$dir/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:log_path=$dir/ubsan"

"$@"
rc=$?

reports=("$dir"/*)
if [ -e "${reports[0]}" ]; then
  for report in "${reports[@]}"; do
    echo "=== sanitizer report ${report##*/}" >&2
    cat "$report" >&2
  done
  echo "sanitizers: ${#reports[@]} report(s); the command exited with $rc" >&2
  exit 1
fi
exit "$rc"
