#!/usr/bin/env bash
# Lists the C++ sources that differ from .clang-format's style and fails if there are any.
set -uo pipefail
cd "$(dirname "$0")/.."
bad=$(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' | xargs clang-format --dry-run 2>&1 |
  sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: warning: code should be clang-formatted.*/\1/p' | sort -u)
if [[ -n "$bad" ]]; then
  echo "$bad" | sed 's/$/: not formatted (run make format)/'
  echo "format-check: $(echo "$bad" | wc -l) files differ from .clang-format"
  exit 1
fi
echo "format-check: every C++ file follows .clang-format"
