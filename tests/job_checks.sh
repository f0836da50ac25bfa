# Shell helper the failure tests source: run a job that must end on its own, and judge it.
# expect_job_end NAME TEXT... -- COMMAND...: runs COMMAND (killed after 60 s) and counts a failure
# in $failures unless it ends within $limit_ms (default 10000) with a non-zero exit code and its
# output holds every TEXT.
expect_job_end() {
  local name=$1 expected=() output start elapsed_ms rc verdict=ok text
  shift
  while [ "$1" != "--" ]; do
    expected+=("$1")
    shift
  done
  shift
  start=$(date +%s%N)
  output=$(timeout -k 5 60 "$@" 2>&1)  # TERM lets mpirun reap its ranks
  rc=$?
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  echo "--- $name: exit code $rc after ${elapsed_ms} ms"
  echo "$output" | grep -v '^\s*$' | head -20
  if [ "$rc" -eq 0 ]; then verdict="exit code 0"; fi
  if [ "$elapsed_ms" -ge "${limit_ms:-10000}" ]; then verdict="took ${elapsed_ms} ms (limit ${limit_ms:-10000} ms)"; fi
  for text in "${expected[@]}"; do
    if ! grep -qF -- "$text" <<<"$output"; then verdict="output lacks: $text"; fi
  done
  echo "--- $name: $verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
}
