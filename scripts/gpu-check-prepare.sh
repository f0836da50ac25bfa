#!/usr/bin/env bash
# Runs HERE (Debian 12, with Debian's mirrors reachable), before a GPU check on a lent device
# machine. Downloads, without installing anything, the Debian 12 .deb files that the build needs
# and the device machine lacks (it has no network and no package registry) into .devkit/debs/ in
# the repository root; scripts/gpu-check.sh unpacks them there into a private prefix.
#
#   scripts/gpu-check-prepare.sh            download what is missing, print the total size
#
# Idempotent: a .deb already present at the candidate version is kept; an older version of the
# same package is replaced. Fails if the total exceeds 56 MiB (the device tool carries at most
# 64 MiB of working tree and carried paths together). .devkit/ is listed in .git/info/exclude, so
# it is never committed; it travels to the device machine only through `carry: [".devkit"]`.
#
# The list is explicit. It was drawn from
#   apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
#     --no-replaces --no-enhances openmpi-bin libopenmpi-dev libopenmpi3 ...
# and from the NEEDED entries of every ELF file in these packages, keeping what is specific to
# the build and leaving out the base system (libc6, libstdc++6, libgcc-s1, gcc/g++ and their
# libraries, perl, python, debconf, ...), the Fortran/Java/compiler side of libopenmpi-dev's
# dependencies and the -dev packages only static linking needs. `--check` lists what the
# recursive resolution finds that is neither bundled nor in the left-out list below.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
debs=$repo/.devkit/debs
max_mib=56

# Unpacked on the device machine into the prefix, always.
packages=(
  # Open MPI 4.1: mpirun/orted/ompi_info, help files and default MCA parameters, the shared
  # libraries and MCA components, the headers and the ompi*.pc files.
  openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev
  # The shared libraries Open MPI, its components and PMIx link.
  libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libpmix2 libmunge2
  libfabric1 libucx0 libibverbs1 ibverbs-providers librdmacm1 libnl-3-200 libnl-route-3-200
  libpsm-infinipath1 libpsm2-2 libnuma1
  # oneDNN (CPU GEMMs); libdnnl.so.2 links libOpenCL.so.1.
  libdnnl2 libdnnl-dev ocl-icd-libopencl1
  # Header-only or small libraries.
  libeigen3-dev catch2 nlohmann-json3-dev libcli11-dev
  libbenchmark-dev libbenchmark1debian libfmt-dev libfmt9
  # pkg-config (pkgconf), which meson uses to find MPI, Eigen, fmt, benchmark, CLI11, json, Catch2.
  pkg-config pkgconf pkgconf-bin libpkgconf3
)

# Base libraries an Ubuntu/CUDA image nearly always has. Downloaded into debs/fallback/;
# gpu-check.sh unpacks one only where the device machine lacks its soname, so these never shadow
# the machine's own (newer) copies.
fallback_packages=(zlib1g libudev1 libuuid1 libatomic1 libgomp1)

# What the recursive resolution finds and we deliberately leave out (--check reports the rest).
left_out=(
  # base system, toolchain and interpreters
  libc6 libc6-dev libc-dev-bin libcrypt1 libcrypt-dev libgcc-s1 libstdc++6 gcc-12-base gcc-11-base
  gcc gcc-11 gcc-12 g++ cpp cpp-11 cpp-12 libgcc-11-dev libgcc-12-dev libstdc++-12-dev libasan6
  libasan8 libatomic1 libcc1-0 libgomp1 libitm1 liblsan0 libquadmath0 libtsan0 libtsan2 libubsan1
  libisl23 libmpc3 libmpfr6 libgmp10 binutils binutils-common binutils-x86-64-linux-gnu libbinutils
  libctf0 libctf-nobfd0 libgprofng0 libjansson4 linux-libc-dev rpcsvc-proto libnsl-dev libnsl2
  libtirpc-dev libtirpc3 libtirpc-common
  perl perl-base perl-modules-5.36 libperl5.36 libgdbm6 libgdbm-compat4 libdb5.3
  debconf cdebconf libdebian-installer4 libnewt0.52 libslang2 libtextwrap1 dpkg tar debianutils
  adduser passwd install-info libaudit1 libaudit-common libcap-ng0 libpam0g libpam-modules
  libpam-modules-bin libselinux1 libsemanage2 libsemanage-common libsepol2 libacl1 libpcre2-8-0
  zlib1g zlib1g-dev libbz2-1.0 liblzma5 libzstd1 libmd0 libbsd0 libffi8 libssl3 libudev1 libuuid1
  libtinfo6 libreadline8 readline-common libedit2 libicu72 libxml2 libz3-4
  libgssapi-krb5-2 libk5crypto3 libkrb5-3 libkrb5support0 libkeyutils1 libcom-err2
  openssh-client libfido2-1 libcbor0.8
  # Fortran compilers (libopenmpi-dev depends on gfortran | fortran-compiler) and LLVM
  gfortran gfortran-11 gfortran-12 libgfortran5 libgfortran-11-dev libgfortran-12-dev
  flang-16 flang-19 flang-22 libflang-16-dev libflang-19-dev libflang-22-dev libclang-cpp16
  libclang-cpp19 libclang-cpp22 libllvm16 libllvm19 libllvm22 libmlir-22
  # -dev packages needed only for static linking, autotools, Java/JS docs, hwloc GUI plugins
  libevent-dev libevent-2.1-7 libevent-extra-2.1-7 libevent-openssl-2.1-7 libhwloc-dev
  libhwloc-plugins libibverbs-dev libnl-3-dev libnl-route-3-dev libnuma-dev libpmix-dev
  libltdl-dev libltdl7 autoconf automake autotools-dev m4 libjs-jquery libjs-jquery-ui
  libpciaccess0 libxnvctrl0 libx11-6 libx11-data libxau6 libxcb1 libxdmcp6 libxext6
)

# All packages the recursive resolution yields, one per line.
resolve() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${packages[@]}" 2>/dev/null | grep -v '^[ <]' | sort -u
}

if [[ ${1:-} == --check ]]; then
  echo "resolved by apt-cache but neither bundled nor in left_out:"
  comm -23 <(resolve) <(printf '%s\n' "${packages[@]}" "${fallback_packages[@]}" "${left_out[@]}" | sort -u)
  exit 0
fi

# Ensure /.devkit/ is ignored (never committed) and that the fallback out dir is too.
exclude=$(git -C "$repo" rev-parse --git-path info/exclude)
[[ $exclude = /* ]] || exclude=$repo/$exclude
mkdir -p "$(dirname "$exclude")"
for pattern in /.devkit/ /gpu-check-out/; do
  grep -qxF "$pattern" "$exclude" 2>/dev/null || echo "$pattern" >>"$exclude"
done

# Candidate versions of every listed package, from one apt-cache call.
declare -A candidate
candidates() {
  apt-cache policy "${packages[@]}" "${fallback_packages[@]}" 2>/dev/null |
    awk '/^[^ ]/ {sub(/:$/, "", $1); sub(/:amd64$/, "", $1); pkg = $1} /Candidate:/ {print pkg, $2}'
}
# apt-get download needs package lists; fetch them once if apt knows no candidate.
listing=$(candidates)
if ! grep -q '^openmpi-bin [0-9]' <<<"$listing"; then
  apt-get update -q
  listing=$(candidates)
fi
while read -r pkg ver; do candidate[$pkg]=$ver; done <<<"$listing"

# Downloads package $1 into directory $2 unless its candidate version is already there.
download() {
  local pkg=$1 dir=$2 ver=${candidate[$1]:-} file
  if [[ -z $ver || $ver == '(none)' ]]; then
    echo "gpu-check-prepare: no candidate version for $pkg (run apt-get update?)" >&2
    return 1
  fi
  file=$(compgen -G "$dir/${pkg}_${ver//:/%3a}_*.deb" || true)
  if [[ -n $file ]]; then
    echo "  have $(basename "$file")"
    return 0
  fi
  rm -f "$dir/${pkg}"_*.deb  # an older version
  # Sandbox::User=root: the _apt user may not write into the repository.
  (cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver") >/dev/null
  echo "  got  $(basename "$(compgen -G "$dir/${pkg}_${ver//:/%3a}_*.deb")")"
}

mkdir -p "$debs/fallback"
echo "gpu-check-prepare: into $debs"
for p in "${packages[@]}"; do download "$p" "$debs"; done
echo "gpu-check-prepare: fallback base libraries into $debs/fallback"
for p in "${fallback_packages[@]}"; do download "$p" "$debs/fallback"; done

# Anything in debs/ that is not in the lists (a package dropped from them) is removed.
shopt -s nullglob
for f in "$debs"/*.deb "$debs"/fallback/*.deb; do
  name=$(basename "$f"); name=${name%%_*}
  if ! printf '%s\n' "${packages[@]}" "${fallback_packages[@]}" | grep -qxF "$name"; then
    echo "  removing $(basename "$f") (not in the list)"; rm -f "$f"
  fi
done

bytes=$(find "$debs" -name '*.deb' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
count=$(find "$debs" -name '*.deb' | wc -l)
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
echo "gpu-check-prepare: $count .deb files, $mib MiB in $debs"
if ((bytes > max_mib * 1048576)); then
  echo "gpu-check-prepare: over the $max_mib MiB limit" >&2
  exit 1
fi
