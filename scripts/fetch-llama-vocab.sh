#!/usr/bin/env bash
# Fetches llama.cpp's vocabulary-only GGUF files of Llama-2 (SentencePiece BPE) and Llama-3
# (byte-level BPE) once into BUILD_DIR/llama-vocab/, for tools/compare_tokenizer.py, with llama.cpp's
# test texts and ids for them (.inp / .out). They come from
# the llama-cpp-python source package on PyPI, which vendors llama.cpp's models/ directory (MIT;
# the vocabularies are Meta's, so they are fetched, not committed).
#
#   scripts/fetch-llama-vocab.sh build      # prints build/llama-vocab
#
# A progress line on stderr; stdout carries only the directory. Offline: exit 2 and one line on stderr.
set -euo pipefail

build=${1:?usage: scripts/fetch-llama-vocab.sh BUILD_DIR}
dest=$build/llama-vocab
version=0.3.36
files=()
for v in llama-spm llama-bpe; do files+=("ggml-vocab-$v.gguf" "ggml-vocab-$v.gguf.inp" "ggml-vocab-$v.gguf.out"); done

have_all() {
  for f in "${files[@]}"; do [[ -s $dest/$f ]] || return 1; done
}
if have_all; then
  echo "$dest"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-llama-vocab: downloading llama-cpp-python $version (source package, 77 MB) from PyPI" >&2
if ! python3 -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$tmp" \
  >"$tmp/pip.log" 2>&1; then
  echo "fetch-llama-vocab: cannot download llama-cpp-python $version from PyPI (offline?)" >&2
  exit 2
fi
members=()
for f in "${files[@]}"; do members+=("llama_cpp_python-$version/vendor/llama.cpp/models/$f"); done
tar -xzf "$tmp/llama_cpp_python-$version.tar.gz" -C "$tmp" "${members[@]}"
mkdir -p "$dest"
for m in "${members[@]}"; do mv "$tmp/$m" "$dest/"; done
echo "$dest"
