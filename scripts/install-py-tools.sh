#!/usr/bin/env bash
# pip installs of the Python modules the comparison tools and checks use (never the library at
# run time): gguf for tools/compare_gguf.py and tools/gguf_reference.py; tokenizers and transformers for
# tools/compare_tokenizer.py. Idempotent, quiet when
# everything is present; checks that need a missing module skip.
# Usage: scripts/install-py-tools.sh
set -euo pipefail
# module name, pip package
modules=(
  "gguf gguf"
  "numpy numpy"
  "tokenizers tokenizers"
  "transformers transformers"
  "accelerate accelerate"  # transformers loads a GGUF (gguf_file=) only with it: bench/torch_quant_peer.py
)
for entry in "${modules[@]}"; do
  read -r module package <<<"$entry"
  if ! python3 -c "import $module" 2>/dev/null; then
    echo "install-py-tools: pip install $package" >&2
    python3 -m pip install --quiet --disable-pip-version-check "$package"
  fi
done
