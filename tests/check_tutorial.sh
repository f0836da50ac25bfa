#!/usr/bin/env bash
# The tutorial's programs (examples/tutorial/) against docs/tutorial.md, so the doc cannot go stale.
# Every output block of the doc is marked by the line before its fence,
#   <!-- output: 03_redistribute np=4 -->
# and must equal, line for line, what that program prints at that rank count. Every program given
# must have at least one block. The programs that check themselves against one process (steps 5..7:
# they exit 1 on a mismatch) also run at np 1 and 2 and must exit 0.
# With TUTORIAL_UPDATE=1 it writes each program's output into its block instead (after a change
# to a program or to what the library prints), then checks as usual.
# Usage: [TUTORIAL_UPDATE=1] check_tutorial.sh MPIRUN_WRAPPER TUTORIAL_MD PROGRAM...
set -u
mpirun_wrapper=$1
doc=$2
shift 2
programs=("$@")
dir=$(mktemp -d "${TMPDIR:-/tmp}/dtensor-tutorial-XXXXXX")
trap 'rm -rf "$dir"' EXIT
unset DTENSOR_COST_MODEL  # explain's estimated times come from the built-in cost model
failures=0

fail() {
  echo "--- FAIL: $*"
  failures=$((failures + 1))
}

program_path() {
  local p
  for p in "${programs[@]}"; do [ "$(basename "$p")" = "$1" ] && echo "$p"; done
}

# Runs program NAME at NP ranks; its stdout goes to $dir/NAME-npNP.out. Steps 6 and 7 write their
# checkpoint into the directory given as their argument.
run() {
  local name=$1 np=$2 path
  path=$(program_path "$name")
  [ -n "$path" ] || { fail "the doc shows $name, which is not a tutorial program"; return 1; }
  timeout -k 5 60 "$mpirun_wrapper" -np "$np" "$path" "$dir/checkpoint-$name" >"$dir/$name-np$np.out" \
    2>"$dir/$name-np$np.err"
  local rc=$?
  [ "$rc" -eq 0 ] || { fail "$name at np $np exited with $rc"; cat "$dir/$name-np$np.err"; return 1; }
}

# The doc's blocks: block K's marker line is "$dir/block-K.marker", its text "$dir/block-K.txt".
extract_blocks() {
  rm -f "$dir"/block-*
  awk -v dir="$dir" '
    /^<!-- output: [^ ]+ np=[0-9]+ -->$/ { marker = $3 " " substr($4, 4); next }
    marker != "" && /^```/ && !inside { inside = 1; n++; print marker > (dir "/block-" n ".marker"); next }
    inside && /^```$/ { inside = 0; marker = ""; close(dir "/block-" n ".txt"); next }
    inside { print > (dir "/block-" n ".txt") }
  ' "$doc"
}

# Rewrites the doc with every block's text replaced by its program's output at its rank count.
update_doc() {
  local marker name np
  for marker in "$dir"/block-*.marker; do
    read -r name np <"$marker"
    run "$name" "$np" || return 1
  done
  awk -v dir="$dir" '
    /^<!-- output: [^ ]+ np=[0-9]+ -->$/ { out = dir "/" $3 "-np" substr($4, 4) ".out"; print; next }
    out != "" && /^```/ && !inside { inside = 1; print; while ((getline line < out) > 0) print line; next }
    inside && /^```$/ { inside = 0; out = ""; print; next }
    !inside { print }
  ' "$doc" >"$dir/updated.md" && cat "$dir/updated.md" >"$doc"
}
if [ "${TUTORIAL_UPDATE:-0}" = 1 ]; then
  extract_blocks
  update_doc || { echo "tutorial: could not update $doc"; exit 1; }
  echo "tutorial: updated the output blocks of $doc"
fi
extract_blocks

shown=" "
for marker in "$dir"/block-*.marker; do
  [ -e "$marker" ] || { fail "$doc has no output blocks"; break; }
  read -r name np <"$marker"
  expected=${marker%.marker}.txt
  touch "$expected"
  shown+="$name "
  run "$name" "$np" || continue
  if diff -u "$expected" "$dir/$name-np$np.out" >"$dir/diff"; then
    echo "--- $name np=$np: output matches the doc"
  else
    fail "$name np=$np: the output differs from the doc's block (- doc, + program):"
    cat "$dir/diff"
  fi
done

for path in "${programs[@]}"; do
  name=$(basename "$path")
  [[ "$shown" == *" $name "* ]] || fail "$name has no output block in $doc"
done

for name in 05_tp_mlp 06_tp_llama 07_training; do
  for np in 1 2; do
    run "$name" "$np" && echo "--- $name np=$np: exit 0 ($(tail -n 1 "$dir/$name-np$np.out"))"
  done
done
echo "tutorial checks: $failures failed"
[ "$failures" -eq 0 ]
