#!/usr/bin/env bash
# Installs the Debian packages dtensor builds and runs with. Idempotent: when every package is
# already present it only runs one dpkg-query and exits.
set -euo pipefail

packages=(
  g++ make meson ninja-build pkg-config clang-format
  openmpi-bin libopenmpi-dev
  libeigen3-dev libdnnl-dev catch2 libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  # text/: Unicode regexes of the tokenizers' pre-tokenizers.
  libpcre2-dev
  # libFuzzer for the fuzz build (build-fuzz); clang 14 cannot compile libstdc++ 12's <source_location>.
  clang-16 libclang-rt-16-dev
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages and not root; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
