#!/usr/bin/env bash
# generate --prompt --chat on the SmolLM2 GGUF at np 2, text in and out: the ChatML prompt must
# encode to the ids Hugging Face tokenizers gives it (worked out once with the PyPI package), the
# streamed answer must read "The capital of France is Paris." and generation must stop at
# <|im_end|> (id 2) long before --max-new-tokens. Skips (exit 77) without the file
# (scripts/fetch-smollm2.sh BUILD_DIR).
# Usage: check_generate_text.sh MPIRUN_WRAPPER GENERATE_EXE GGUF_FILE
set -u
mpirun_wrapper=$1
generate=$2
gguf=$3
if [ ! -s "$gguf" ]; then
  echo "SKIP: $gguf is absent (scripts/fetch-smollm2.sh BUILD_DIR downloads it)"
  exit 77
fi
output=$(timeout -k 5 200 "$mpirun_wrapper" -np 2 "$generate" --model "$gguf" \
  --prompt "What is the capital of France?" --chat --max-new-tokens 40 2>&1)
rc=$?
echo "$output"
failures=0
expect() {
  if grep -qF -- "$1" <<<"$output"; then echo "--- ok: $1"; else echo "--- missing: $1"; failures=$((failures + 1)); fi
}
[ "$rc" -eq 0 ] || { echo "--- exit code $rc"; failures=$((failures + 1)); }
expect "prompt ids (16): 1 4093 198 1780 314 260 3575 282 4649 47 2 198 1 520 9531 198"
expect "answer: The capital of France is Paris."
expect "generated ids (8): 504 3575 282 4649 314 7042 30 2"
echo "generate text checks: $failures failed"
[ "$failures" -eq 0 ]
