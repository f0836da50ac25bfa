#!/usr/bin/env bash
# The GPU check in one command, for a lent device machine (Linux x86-64, one NVIDIA GPU, root, no
# network and no package registry, not Debian): builds dtensor with the CUDA backend library
# (libdtensor_cuda.so, beside libdtensor.so) and runs every GPU suite, the CPU tensor_ops and
# device_backend suites and `make bench-gpu`, in well under 8 minutes.
#
# How it is launched. Here, first (Debian 12, with Debian's mirrors reachable):
#     scripts/gpu-check-prepare.sh          # the .deb files the build needs, into .devkit/debs/
# then, through the session's device tool:
#     run  command: "bash scripts/gpu-check.sh"   carry: [".devkit"]   timeout_s: 560
# The logs come back from $OUT (set by the device tool; ./gpu-check-out when unset):
#     summary.txt     machine, compilers, CUDA libraries found, each step's exit status and seconds
#     setup.log       unpacking the .debs, the environment, pkg-config/Open MPI checks
#     configure.log   meson setup (with meson-log.txt appended when it fails)
#     build.log       ninja
#     gpu-tests.log   meson test --suite gpu;  testlog-gpu.txt: every GPU test's full output
#     cpu-tests.log   meson test --suite tensor_ops --suite device_backend (the backend library loads)
#     bench-gpu.log   the bench-gpu recipe of the Makefile
# It goes on after a failed step wherever later steps can still run, and exits non-zero if any
# step failed (a GPU suite reported as skipped, i.e. no GPU visible, counts as a failure).
#
# Dependencies: every .devkit/debs/*.deb is unpacked with `dpkg -x` into a private prefix
# ($DTENSOR_DEPS_PREFIX, default /opt/dtensor-deps; never into /), with the links Debian's
# update-alternatives would make (mpirun, mpic++, mpi*.pc, ...), its .pc files rewritten to point
# into the prefix, and PATH, LD_LIBRARY_PATH, LIBRARY_PATH, C(PLUS)_INCLUDE_PATH, PKG_CONFIG_PATH,
# CMAKE_PREFIX_PATH and Open MPI's / PMIx's relocation variables (OPAL_PREFIX, ...) exported.
# .devkit/debs/fallback/*.deb (zlib, libudev, libuuid, libatomic, libgomp) are unpacked, into
# the prefix's fallback/, only where the machine lacks that library. cuBLAS and NCCL are taken
# from /usr/local/cuda/lib64, or else from the pip nvidia-* packages under python3's
# site-packages (through links in the prefix's cuda-shim/lib, as the build's find_library needs
# a plain lib*.so).
#
#   bash scripts/gpu-check.sh                 the whole check
#   bash scripts/gpu-check.sh --env-only      unpack and check the environment only (no build)
#   source scripts/gpu-check.sh --env-only    the same, leaving the environment in this shell
# Variables: DTENSOR_DEPS_PREFIX, OUT, GPU_CHECK_BUILD (build-gpu), GPU_CHECK_DEADLINE_S (470:
# steps are cut short so that the whole run ends by then), GPU_CHECK_JOBS (nproc).

gpu_check_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=${DTENSOR_DEPS_PREFIX:-/opt/dtensor-deps}
MA=x86_64-linux-gnu

# Prints to stdout and to $setup_log.
say() { echo "$*" | tee -a "${setup_log:-/dev/null}"; }

# Unpacks the .debs into $P unless the same set is already there.
unpack_debs() {
  local debs=$gpu_check_repo/.devkit/debs f stamp list
  shopt -s nullglob
  local files=("$debs"/*.deb)
  shopt -u nullglob
  if ((${#files[@]} == 0)); then
    say "setup: no .deb files in $debs: run scripts/gpu-check-prepare.sh here and carry .devkit"
    return 1
  fi
  case $(readlink -m "$P") in
    / | /usr | /usr/local | /opt) say "setup: refusing prefix $P"; return 1 ;;
  esac
  list=$(for f in "${files[@]}"; do basename "$f"; done | sort)
  stamp=$P/.unpacked
  if [[ -f $stamp && $(cat "$stamp") == "$list" ]]; then
    say "setup: $P already holds these ${#files[@]} packages"
  else
    if [[ -d $P && ! -f $stamp && -n $(ls -A "$P") ]]; then
      say "setup: $P exists and was not made by this script: refusing to replace it"
      return 1
    fi
    say "setup: unpacking ${#files[@]} packages into $P"
    rm -rf "$P"
    mkdir -p "$P"
    for f in "${files[@]}"; do
      extract_deb "$f" "$P" || { say "setup: cannot unpack $f"; return 1; }
    done
    make_links
    rewrite_pc_files
    echo "$list" >"$stamp"
  fi
}

# dpkg -x, or ar + tar where dpkg is missing.
extract_deb() {
  if command -v dpkg >/dev/null; then
    dpkg -x "$1" "$2"
  else
    local member
    member=$(ar t "$1" | grep '^data\.tar') || return 1
    local z=()
    case $member in *.xz) z=(-J) ;; *.zst) z=(--zstd) ;; *.gz) z=(-z) ;; esac
    ar p "$1" "$member" | tar -x "${z[@]}" -C "$2"
  fi
}

# What Debian's maintainer scripts would do with update-alternatives, inside the prefix.
make_links() {
  local L=$P/usr/lib/$MA b psm
  for b in mpirun mpiexec; do ln -sfn $b.openmpi "$P/usr/bin/$b"; done
  ln -sfn mpicc.openmpi "$P/usr/bin/mpicc"
  for b in mpic++ mpicxx mpiCC; do ln -sfn mpic++.openmpi "$P/usr/bin/$b"; done
  for b in mpi mpi-c mpi-cxx mpi-fort; do
    ln -sfn "o${b}.pc" "$L/pkgconfig/$b.pc"   # mpi.pc -> ompi.pc, mpi-cxx.pc -> ompi-cxx.pc, ...
  done
  ln -sfn openmpi/lib/libmpi.so "$L/libmpi.so"
  ln -sfn openmpi/lib/libmpi_cxx.so "$L/libmpi++.so"
  mkdir -p "$P/usr/include/$MA"
  ln -sfn "../../lib/$MA/openmpi/include" "$P/usr/include/$MA/mpi"
  psm=$(cd "$P/usr/lib/libpsm1" 2>/dev/null && ls libpsm_infinipath.so.1.* 2>/dev/null | head -n 1)
  [[ -n $psm ]] && ln -sfn "../libpsm1/$psm" "$L/libpsm_infinipath.so.1"
  return 0
}

# /usr in every .pc file -> $P/usr (prefix=/usr, includedir=/usr/include, -I/usr/..., -L/usr/...).
rewrite_pc_files() {
  find "$P" -name '*.pc' -type f -print0 |
    xargs -0 -r sed -E -i "s#(^|[=[:space:]]|-I|-L)/usr(/|\$|[[:space:]])#\1$P/usr\2#g"
}

# Base libraries from debs/fallback, only those whose soname the machine lacks.
use_fallbacks() {
  local dir=$gpu_check_repo/.devkit/debs/fallback pkg so f
  local -A soname=([zlib1g]=libz.so.1 [libudev1]=libudev.so.1 [libuuid1]=libuuid.so.1
    [libatomic1]=libatomic.so.1 [libgomp1]=libgomp.so.1)
  local cache fallback_used=0
  cache=$(ldconfig -p 2>/dev/null)
  for pkg in "${!soname[@]}"; do
    so=${soname[$pkg]}
    if grep -q "^[[:space:]]*$so (.*x86-64" <<<"$cache" || [[ -e /lib/$MA/$so || -e /usr/lib/$MA/$so ]]; then
      continue
    fi
    f=$(compgen -G "$dir/${pkg}_*.deb" | head -n 1)
    if [[ -z $f ]]; then
      say "setup: the machine lacks $so and there is no $pkg .deb"
      continue
    fi
    say "setup: the machine lacks $so: using Debian's $pkg from the prefix"
    mkdir -p "$P/fallback"
    extract_deb "$f" "$P/fallback"
    fallback_used=1
  done
  ((fallback_used)) && gpu_fallback_dirs+=("$P/fallback/lib/$MA" "$P/fallback/usr/lib/$MA")
  return 0
}

# Site-packages directories that may hold the pip nvidia-* packages: python3's first, then the
# usual places of other interpreters and virtual environments.
site_packages() {
  {
    command -v python3 >/dev/null && python3 - <<'PY' 2>/dev/null
import site, sysconfig
dirs = list(site.getsitepackages()) + [site.getusersitepackages(), sysconfig.get_paths()["purelib"]]
print("\n".join(d for d in dirs if d))
PY
    compgen -G '/opt/*/.venv/lib/python3*/site-packages'
    compgen -G '/opt/*/lib/python3*/site-packages'
    compgen -G '/usr/local/lib/python3*/dist-packages'
    compgen -G '/usr/local/lib/python3*/site-packages'
    compgen -G '/usr/lib/python3/dist-packages'
  } | awk '!seen[$0]++'
}

# cudart, cuBLAS, cuBLASLt, NCCL: /usr/local/cuda/lib64 or the pip nvidia-* packages.
find_cuda() {
  local nvcc lib found sp h d
  nvcc=$(command -v nvcc || true)
  [[ -z $nvcc && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
  if [[ -z $nvcc ]]; then
    say "cuda: no nvcc found"
    return 0
  fi
  CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
  [[ -d /usr/local/cuda/bin && $(readlink -f /usr/local/cuda) == "$CUDA_ROOT" ]] && CUDA_ROOT=/usr/local/cuda
  export CUDA_HOME=$CUDA_ROOT CUDA_PATH=$CUDA_ROOT
  gpu_path_extra+=("$CUDA_ROOT/bin")
  say "cuda: nvcc $nvcc, root $CUDA_ROOT"
  local sps
  mapfile -t sps < <(site_packages)
  for lib in cudart cublas cublasLt nccl; do
    if [[ -e $CUDA_ROOT/lib64/lib$lib.so ]]; then
      say "cuda: lib$lib.so in $CUDA_ROOT/lib64"
      continue
    fi
    found=
    for sp in "${sps[@]}"; do
      [[ -d $sp/nvidia ]] || continue
      found=$(find "$sp/nvidia" -maxdepth 4 \( -name "lib$lib.so" -o -name "lib$lib.so.[0-9]*" \) 2>/dev/null |
        sort -V | tail -n 1)
      [[ -n $found ]] && break
    done
    if [[ -z $found ]]; then
      say "cuda: lib$lib.so found neither in $CUDA_ROOT/lib64 nor under site-packages/nvidia"
      continue
    fi
    mkdir -p "$P/cuda-shim/lib"
    ln -sfn "$found" "$P/cuda-shim/lib/lib$lib.so"
    gpu_cuda_libdirs+=("$(dirname "$found")")
    say "cuda: lib$lib.so from $found (linked as $P/cuda-shim/lib/lib$lib.so)"
  done
  for h in cuda_runtime.h cublas_v2.h cublasLt.h nccl.h; do
    [[ -e $CUDA_ROOT/include/$h ]] && continue
    found=
    for sp in "${sps[@]}"; do
      [[ -d $sp/nvidia ]] || continue
      found=$(find "$sp/nvidia" -maxdepth 4 -name "$h" 2>/dev/null | head -n 1)
      [[ -n $found ]] && break
    done
    if [[ -n $found ]]; then
      d=$(dirname "$found")
      gpu_cuda_incdirs+=("$d")
      say "cuda: $h from $d"
    else
      say "cuda: $h found neither in $CUDA_ROOT/include nor under site-packages/nvidia"
    fi
  done
  [[ -d $P/cuda-shim/lib ]] && gpu_cuda_linkdirs+=("$P/cuda-shim/lib")
  return 0
}

# Joins the arguments with ':' and drops empty ones.
join_path() {
  local IFS=: parts=() kept=() d
  read -ra parts <<<"$*"
  for d in "${parts[@]}"; do [[ -n $d ]] && kept+=("$d"); done
  echo "${kept[*]}"
}

# meson and ninja may be pip packages whose scripts are not on PATH.
find_build_tools() {
  mkdir -p "$P/tools-bin"
  if ! command -v meson >/dev/null && python3 -c 'import mesonbuild' 2>/dev/null; then
    printf '#!/bin/sh\nexec python3 -m mesonbuild.mesonmain "$@"\n' >"$P/tools-bin/meson"
    chmod +x "$P/tools-bin/meson"
  fi
  if ! command -v ninja >/dev/null && python3 -c 'import ninja' 2>/dev/null; then
    printf '#!/bin/sh\nexec python3 -m ninja "$@"\n' >"$P/tools-bin/ninja"
    chmod +x "$P/tools-bin/ninja"
  fi
}

setup_env() {
  local L=$P/usr/lib/$MA
  gpu_fallback_dirs=() gpu_cuda_libdirs=() gpu_cuda_linkdirs=() gpu_cuda_incdirs=() gpu_path_extra=()
  unpack_debs || return 1
  use_fallbacks
  find_cuda
  PATH=$(join_path "$P/usr/bin" "${gpu_path_extra[@]}" "$PATH" "$P/tools-bin")
  # Some packages (libnl) still install into /lib/x86_64-linux-gnu: $P/lib/$MA too.
  LD_LIBRARY_PATH=$(join_path "$L" "$P/lib/$MA" "$L/openmpi/lib" "${gpu_cuda_libdirs[@]}" \
    "${LD_LIBRARY_PATH:-}" "${gpu_fallback_dirs[@]}")
  LIBRARY_PATH=$(join_path "$L" "$P/lib/$MA" "$L/openmpi/lib" "${gpu_cuda_linkdirs[@]}" \
    "${gpu_fallback_dirs[@]}" "${LIBRARY_PATH:-}")
  # -L first on the link line, so that a system copy (in a directory gcc searches before
  # LIBRARY_PATH) never wins over the bundled library whose headers we compile with. meson reads
  # LDFLAGS when it configures.
  export LDFLAGS="-L$L -L$L/openmpi/lib${LDFLAGS:+ $LDFLAGS}"
  # C(PLUS)_INCLUDE_PATH, not CPATH: searched like system directories, so the bundled headers
  # draw no warnings, as in /usr/include.
  CPLUS_INCLUDE_PATH=$(join_path "$P/usr/include" "${gpu_cuda_incdirs[@]}" "${CPLUS_INCLUDE_PATH:-}")
  C_INCLUDE_PATH=$(join_path "$P/usr/include" "${gpu_cuda_incdirs[@]}" "${C_INCLUDE_PATH:-}")
  PKG_CONFIG_PATH=$(join_path "$L/pkgconfig" "$P/usr/share/pkgconfig" "$P/usr/lib/pkgconfig" \
    "${PKG_CONFIG_PATH:-}")
  CMAKE_PREFIX_PATH=$(join_path "$P/usr" "${CMAKE_PREFIX_PATH:-}")
  export PATH LD_LIBRARY_PATH LIBRARY_PATH CPLUS_INCLUDE_PATH C_INCLUDE_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH
  export PKG_CONFIG=$P/usr/bin/pkgconf
  # Open MPI and PMIx relocated: help files, MCA components and Debian's default MCA parameters
  # (openmpi-mca-params.conf: no ucx/ofi/openib) are found under the prefix.
  export OPAL_PREFIX=$P/usr OPAL_SYSCONFDIR=$P/etc/openmpi
  export OPAL_LIBDIR=$L/openmpi/lib OPAL_PKGLIBDIR=$L/openmpi/lib/openmpi3
  export OPAL_INCLUDEDIR=$L/openmpi/include OPAL_PKGDATADIR=$P/usr/share/openmpi
  export PMIX_PREFIX=$L/pmix2
  export UCX_MODULE_DIR=$L/ucx FI_PROVIDER_PATH=$L/libfabric
  # gVisor (kernel reported as 4.4.0) has no process_vm_readv: no single-copy shared memory.
  if [[ $(uname -r) == 4.4.0* ]]; then
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
    say "setup: gVisor kernel: OMPI_MCA_btl_vader_single_copy_mechanism=none"
  fi
  find_build_tools
  {
    echo "setup: environment"
    local v
    for v in PATH LD_LIBRARY_PATH LIBRARY_PATH LDFLAGS CPLUS_INCLUDE_PATH PKG_CONFIG_PATH PKG_CONFIG \
      CMAKE_PREFIX_PATH OPAL_PREFIX OPAL_SYSCONFDIR PMIX_PREFIX CUDA_HOME; do
      echo "  $v=${!v:-}"
    done
  } | tee -a "${setup_log:-/dev/null}"
}

# Which pkg-config files, headers and libraries the environment resolves, and Open MPI's paths.
check_env() {
  local m rc=0
  {
    echo "check: pkg-config $(command -v pkg-config) ($PKG_CONFIG $("$PKG_CONFIG" --version))"
    for m in ompi-cxx mpi eigen3 fmt benchmark CLI11 nlohmann_json catch2; do
      if "$PKG_CONFIG" --exists "$m"; then
        echo "  $m $("$PKG_CONFIG" --modversion "$m"): $("$PKG_CONFIG" --cflags --libs "$m")"
      else
        echo "  $m: NOT FOUND"; rc=1
      fi
    done
    echo "check: oneapi/dnnl/dnnl.hpp: $(echo '#include <oneapi/dnnl/dnnl.hpp>' |
      ${CXX:-g++} -std=c++20 -x c++ -M - 2>/dev/null | tr ' ' '\n' | grep -m1 'dnnl\.hpp' || echo NOT FOUND)"
    echo "check: -ldnnl resolves to: $(echo 'int main() {}' | ${CXX:-g++} -x c++ - -o /dev/null $LDFLAGS -ldnnl \
      -Wl,--trace 2>&1 | grep -m1 'dnnl' || echo NOT FOUND)"
    echo "check: mpirun $(command -v mpirun): $(mpirun --version 2>&1 | head -n 1)"
    echo "check: ompi_info --path:"
    ompi_info --path all 2>&1 | grep -E 'Prefix|Libdir|Pkglibdir|Sysconfdir|Pkgdatadir' | sort -u
    local info
    info=$(ompi_info 2>&1)
    echo "check: Open MPI components found: $(grep -cE '^ +MCA ' <<<"$info")," \
      "pml/btl: $(awk '/MCA (pml|btl):/ {printf "%s ", $3}' <<<"$info")"
    grep -E 'unable to open|cannot open' <<<"$info" | sed 's/^/  component load error: /'
    echo "check: meson $(command -v meson) $(meson --version 2>&1), ninja $(command -v ninja) $(ninja --version 2>&1)"
  } 2>&1 | tee -a "${setup_log:-/dev/null}"
  return $rc
}

# ---------------------------------------------------------------------------------------------
if [[ ${1:-} == --env-only ]]; then
  if setup_env && check_env; then gpu_check_rc=0; else gpu_check_rc=1; fi
  # Sourced: leave the environment in the caller's shell. Run: exit with the result.
  [[ ${BASH_SOURCE[0]} != "$0" ]] && return $gpu_check_rc
  exit $gpu_check_rc
fi
[[ ${BASH_SOURCE[0]} != "$0" ]] && { echo "source it only with --env-only" >&2; return 1; }

set -uo pipefail
cd "$gpu_check_repo" || exit 1
OUT=${OUT:-$gpu_check_repo/gpu-check-out}
mkdir -p "$OUT"
BUILD=${GPU_CHECK_BUILD:-build-gpu}
DEADLINE_S=${GPU_CHECK_DEADLINE_S:-470}
JOBS=${GPU_CHECK_JOBS:-$(nproc)}
summary=$OUT/summary.txt setup_log=$OUT/setup.log
: >"$summary"; : >"$setup_log"
started=$SECONDS
failed=()

note() { echo "$*" | tee -a "$summary"; }

# run_step NAME LOG CAP_SECONDS COMMAND...: runs COMMAND (under timeout: the smaller of CAP and
# the time left before the deadline), its output into LOG and stdout, and notes its result.
run_step() {
  local name=$1 log=$2 cap=$3 left limit t0 rc
  shift 3
  left=$((DEADLINE_S - (SECONDS - started) - 5))
  limit=$((cap < left ? cap : left))
  if ((limit < 15)); then
    note "$(printf '%-14s %-10s %5ss  %s' "$name" "NOT RUN" 0 "out of time (deadline ${DEADLINE_S}s)")"
    failed+=("$name")
    return 1
  fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
  t0=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  local what="rc=$rc"
  ((rc == 124 || rc == 137)) && what="rc=$rc (timed out after ${limit}s)"
  note "$(printf '%-14s %-10s %5ss  %s' "$name" "$([[ $rc == 0 ]] && echo ok || echo FAILED)" $((SECONDS - t0)) "$what")"
  ((rc == 0)) || failed+=("$name")
  return $rc
}

# Counts of OK / FAIL / SKIP / TIMEOUT results in a meson testlog json.
test_counts() {
  python3 - "$1" <<'PY' 2>/dev/null || echo "no testlog"
import collections, json, sys
c = collections.Counter(json.loads(l)["result"] for l in open(sys.argv[1]) if l.strip())
print(" ".join(f"{k}={v}" for k, v in sorted(c.items())) or "no tests")
PY
}

{
  echo "gpu-check $(date -u +%FT%TZ) on $(hostname), kernel $(uname -r), $(nproc) cores"
  echo "repo: $(git -C "$gpu_check_repo" rev-parse --short HEAD 2>/dev/null) $(git -C "$gpu_check_repo" status --short 2>/dev/null | wc -l) changed files"
  echo "--- nvidia-smi -L"; nvidia-smi -L 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
} >>"$summary"

setup_t0=$SECONDS
if setup_env && check_env; then setup_rc=0; else setup_rc=1; failed+=(setup); fi
{
  echo "--- nvcc --version"; nvcc --version 2>&1 | tail -n 2
  echo "--- g++ --version"; g++ --version 2>&1 | head -n 1
  echo "--- meson $(meson --version 2>&1), ninja $(ninja --version 2>&1), python3 $(python3 -c 'import sys; print(sys.version.split()[0])' 2>&1)"
  grep -E '^(cuda|setup): ' "$setup_log"
  echo "--- steps (deadline ${DEADLINE_S}s)"
  printf '%-14s %-10s %5ss  %s\n' setup "$([[ $setup_rc == 0 ]] && echo ok || echo FAILED)" $((SECONDS - setup_t0)) "rc=$setup_rc"
} >>"$summary"

# Configure (again where a warm machine kept the build directory) and build.
setup_args=(-Dcuda=enabled --wrap-mode=nofallback)
[[ -f $BUILD/meson-private/coredata.dat ]] && setup_args+=(--reconfigure)
if run_step configure "$OUT/configure.log" 120 meson setup "$BUILD" "${setup_args[@]}"; then
  run_step build "$OUT/build.log" 330 ninja -C "$BUILD" -j"$JOBS"
else
  [[ -f $BUILD/meson-logs/meson-log.txt ]] && tail -c 4000000 "$BUILD/meson-logs/meson-log.txt" >>"$OUT/configure.log"
  note "$(printf '%-14s %-10s %5ss  %s' build "NOT RUN" 0 "configure failed")"
  failed+=(build)
fi

# Tests: what was built runs even where part of the build failed.
if [[ -f $BUILD/build.ninja ]]; then
  # The backend library sits beside the core, and CPU programs link no CUDA library.
  run_step backend-layout "$OUT/build.log" 30 bash -c '
    [[ -f $1/libdtensor_cuda.so && -f $1/libdtensor.so ]] || { echo "no $1/libdtensor_cuda.so"; exit 1; }
    if ldd "$1/tools/make_checkpoint" | grep -E "libcudart|libcublas|libnccl"; then
      echo "tools/make_checkpoint links a CUDA library"; exit 1
    fi
    echo "libdtensor_cuda.so beside libdtensor.so; tools/make_checkpoint links no CUDA library"' _ "$BUILD"
  rm -f "$BUILD"/meson-logs/testlog-{gpu,cpu}.{json,txt}
  run_step gpu-tests "$OUT/gpu-tests.log" 200 \
    meson test -C "$BUILD" --suite gpu --print-errorlogs --no-rebuild --logbase testlog-gpu
  if [[ -f $BUILD/meson-logs/testlog-gpu.json ]]; then
    counts=$(test_counts "$BUILD/meson-logs/testlog-gpu.json")
    note "               gpu suites: $counts"
    if [[ $counts == *SKIP=* ]]; then
      note "               a GPU suite was skipped (no GPU visible?): counted as a failure"
      failed+=(gpu-skipped)
    fi
    tail -c 15000000 "$BUILD/meson-logs/testlog-gpu.txt" >"$OUT/testlog-gpu.txt" 2>/dev/null
  fi

  run_step cpu-tests "$OUT/cpu-tests.log" 90 \
    meson test -C "$BUILD" --suite tensor_ops --suite device_backend --print-errorlogs --no-rebuild \
    --logbase testlog-cpu
  [[ -f $BUILD/meson-logs/testlog-cpu.json ]] &&
    note "               tensor_ops, device_backend: $(test_counts "$BUILD/meson-logs/testlog-cpu.json")"

  # bench-gpu: the Makefile's recipe, with `build` and `deps` taken as done (-o), so that neither
  # install-deps.sh (apt-get) nor meson runs from make. Without make: the same commands.
  if command -v make >/dev/null; then
    run_step bench-gpu "$OUT/bench-gpu.log" 200 make -o build -o deps bench-gpu BUILD="$BUILD"
  else
    run_step bench-gpu "$OUT/bench-gpu.log" 200 bash -c '
      set -e; B=$1; M=$B/gpu-bench-model
      [[ -f $M/config.json ]] || $B/tools/make_checkpoint --out $M --arch llama --hidden 2048 \
        --intermediate 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000 --dtype bf16 --seed 1 \
        --max-shard-bytes 1000000000
      python3 bench/torch_linear.py $B/torch-linear.json || true
      python3 bench/torch_prefill.py $M $B/torch-prefill.json --tokens 512 --dtype bf16 --repeats 15 || true
      scripts/mpirun.sh -np 1 $B/bench/bench_gpu --torch-linear $B/torch-linear.json \
        --model $M --torch-prefill $B/torch-prefill.json --prefill-tokens 512 --dtype bf16' _ "$BUILD"
  fi
else
  for s in gpu-tests cpu-tests bench-gpu; do
    note "$(printf '%-14s %-10s %5ss  %s' "$s" "NOT RUN" 0 "no build")"
    failed+=("$s")
  done
fi

# Every file that comes back stays under the device tool's 16 MiB.
for f in "$OUT"/*; do
  [[ -f $f ]] && (($(stat -c %s "$f") > 15000000)) && { tail -c 15000000 "$f" >"$f.tmp"; mv "$f.tmp" "$f"; }
done
note "--- total $((SECONDS - started))s; failed: ${failed[*]:-none}"
((${#failed[@]} == 0))
