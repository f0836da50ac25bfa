#!/usr/bin/env bash
# generate on the SmolLM2 GGUF at np 1..4 with --check, against transformers loading the same file
# (tools/compare_gguf.py): prompt logits within 1e-4 and identical greedy ids at every rank count.
# Skips (exit 77) when the file (scripts/fetch-smollm2.sh) or a Python module is missing.
# Usage: check_gguf_transformers.sh MPIRUN_WRAPPER GENERATE_EXE GGUF_FILE COMPARE_GGUF_PY
set -u
mpirun_wrapper=$1
generate=$2
gguf=$3
compare=$4
if [ ! -s "$gguf" ]; then
  echo "SKIP: $gguf is absent (scripts/fetch-smollm2.sh BUILD_DIR downloads it)"
  exit 77
fi
if ! command -v python3 >/dev/null; then
  echo "SKIP: no python3"
  exit 77
fi
# transformers' progress bars would bury the result lines
export TQDM_DISABLE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
exec timeout -k 5 280 python3 "$compare" --gguf "$gguf" --generate "$generate" --mpirun "$mpirun_wrapper" \
  --np 1 2 3 4
