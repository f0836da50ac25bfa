#!/usr/bin/env bash
# io/gguf's dequantization of every readable type against the gguf PyPI package: writes the
# reference file and values (tools/gguf_reference.py), then runs the hidden [gguf-reference] case.
# Skips (exit 77) without python3, numpy or gguf.
# Usage: check_gguf_reference.sh MPIRUN_WRAPPER TEST_GGUF_EXE GGUF_REFERENCE_PY
set -u
mpirun_wrapper=$1
test_exe=$2
script=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-gguf-reference-XXXXXX")
trap 'rm -rf "$dir"' EXIT
if ! command -v python3 >/dev/null; then
  echo "SKIP: no python3"
  exit 77
fi
python3 "$script" "$dir"
rc=$?
[ $rc -eq 0 ] || exit $rc
DTENSOR_GGUF_REFERENCE_DIR=$dir "$mpirun_wrapper" -np 1 -x DTENSOR_GGUF_REFERENCE_DIR "$test_exe" "[gguf-reference]"
